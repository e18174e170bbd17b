-- ts.thread.start and handle:join: own states, copied arguments and
-- results, errors with tracebacks, timeouts, and joins that block only
-- the calling tasklet.
local ts = require "tasksock"

describe("tasksock.thread.start", function()
  it("runs a source string with copies of its arguments", function()
    local arg = {list = {1, 2, 3}}
    local th = ts.thread.start("local t, k = ... ; t.list[1] = 99 ; return #t.list, k, t.list[1]", arg, "key")
    assert.same({true, 3, "key", 99}, {th:join(10)})
    assert.equal(1, arg.list[1])  -- it had a copy
  end)

  it("runs a file when given a path ending in .lua", function()
    local path = os.tmpname() .. ".lua"
    local f = assert(io.open(path, "w"))
    f:write("local a, b = ...\nreturn a * b, (...)\n")
    f:close()
    local ok, prod, first = ts.thread.start(path, 6, 7):join(10)
    os.remove(path)
    assert.same({true, 42, 6}, {ok, prod, first})
  end)

  it("runs a Lua function that uses no upvalue but globals", function()
    local th = ts.thread.start(function(a, b) return string.rep(a, b) end, "ab", 3)
    assert.same({true, "ababab"}, {th:join(10)})
  end)

  it("refuses a function with upvalues, naming it", function()
    local up = 1
    assert.error_matches(function() ts.thread.start(function() return up end) end,
      "bad argument #1 to 'start' %(the function uses the upvalue 'up'")
  end)

  it("refuses arguments that cannot be copied, naming where", function()
    assert.error_matches(function() ts.thread.start("return", 1, {f = print}) end,
      "cannot send a function %(at arg%[2%]%.f%)")
  end)

  it("checks its first argument", function()
    assert.error_matches(function() ts.thread.start() end, "bad argument #1 to 'start'")
    assert.error_matches(function() ts.thread.start(42) end,
      "bad argument #1 to 'start' %(string or Lua function expected")
    assert.error_matches(function() ts.thread.start(print) end, "bad argument #1 to 'start'")
  end)

  it("gives the thread its own globals and the parent's package paths", function()
    -- luacheck: globals THREAD_SPEC_GLOBAL
    THREAD_SPEC_GLOBAL = "parent"
    local th = ts.thread.start("return THREAD_SPEC_GLOBAL, package.path, package.cpath")
    local ok, g, path, cpath = th:join(10)
    THREAD_SPEC_GLOBAL = nil
    assert.is_true(ok)
    assert.is_nil(g)
    assert.equal(package.path, path)
    assert.equal(package.cpath, cpath)
  end)

  it("lets the thread run its own tasklets and loop", function()
    local th = ts.thread.start([[
      local ts = require "tasksock"
      local got = {}
      for i = 1, 3 do ts.spawn(function() ts.sleep(0.01 * (4 - i)); got[#got + 1] = i end) end
      ts.run()
      return got
    ]])
    assert.same({true, {3, 2, 1}}, {th:join(10)})
  end)
end)

describe("thread:join", function()
  it("returns false and the error with the thread's traceback", function()
    local ok, err = ts.thread.start("local function f() error('boom') end\nf()"):join(10)
    assert.is_false(ok)
    assert.matches(":1: boom", err)
    assert.matches("stack traceback:", err)
    assert.matches("in local 'f'", err)
  end)

  it("reports a syntax error in the chunk", function()
    local ok, err = ts.thread.start("return +"):join(10)
    assert.is_false(ok)
    assert.matches("unexpected symbol", err)
  end)

  it("reports results that cannot be copied back", function()
    local ok, err = ts.thread.start("return 1, print"):join(10)
    assert.is_false(ok)
    assert.matches("cannot send a function %(at result%[2%]%)", err)
  end)

  it("times out, and can be called again", function()
    local gate = ts.xchannel(0)
    local th = ts.thread.start("local gate = ... ; return gate:receive(10)", gate)
    assert.same({nil, "timeout"}, {th:join(0)})
    assert.same({nil, "timeout"}, {th:join(0.02)})
    assert.is_false(th:done())
    gate:send("open")
    assert.same({true, "open"}, {th:join(10)})
    assert.same({true, "open"}, {th:join(0)})
    assert.is_true(th:done())
  end)

  it("blocks only the calling tasklet", function()
    local gate = ts.xchannel(0)
    local th = ts.thread.start("local gate = ... ; gate:receive(10) ; return 'done'", gate)
    local ticks, res = 0, nil
    ts.spawn(function() res = {th:join(10)} end)
    ts.spawn(function()
      for _ = 1, 5 do ts.sleep(0.005); ticks = ticks + 1 end
      gate:send(true)
    end)
    ts.run()
    assert.equal(5, ticks)
    assert.same({true, "done"}, res)
  end)

  it("wakes several joiners", function()
    local gate = ts.xchannel(0)
    local th = ts.thread.start("local gate = ... ; return gate:receive(10)", gate)
    local got = {}
    for i = 1, 3 do ts.spawn(function() got[i] = select(2, th:join(10)) end) end
    ts.spawn(function() ts.sleep(0.01); gate:send("x") end)
    ts.run()
    assert.same({"x", "x", "x"}, got)
  end)

  it("survives the joining tasklet being killed", function()
    local gate = ts.xchannel(0)
    local th = ts.thread.start("local gate = ... ; return gate:receive(10)", gate)
    local t = ts.spawn(function() return th:join() end)
    ts.spawn(function() ts.sleep(0.01); t:kill() end)
    ts.run()
    gate:send("after")
    assert.same({true, "after"}, {th:join(10)})
  end)

  it("shows the thread's state in tostring", function()
    local th = ts.thread.start("return")
    th:join(10)
    assert.matches("^thread %(done%): 0x", tostring(th))
  end)
end)
