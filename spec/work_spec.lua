-- ts.work and ts.thread.pool: blocking Lua code on worker states while
-- the loop keeps serving.
local ts = require "tasksock"
local tsocket = require "tasksock.socket"

describe("tasksock.work", function()
  it("returns the chunk's copied results", function()
    assert.same({5, "x", {1, 2}}, {ts.work("local a, b = ... ; return a + b, 'x', {1, 2}", 2, 3)})
    assert.same({"abab"}, {ts.work(function(s, n) return s:rep(n) end, "ab", 2)})
  end)

  it("raises the worker's error, with its traceback, in the caller", function()
    local ok, err = pcall(ts.work, "local function inner() error('bad job') end\ninner()")
    assert.is_false(ok)
    assert.matches(":1: bad job", err)
    assert.matches("stack traceback:", err)
    assert.matches("in local 'inner'", err)
  end)

  it("keeps the loop serving while a job blocks its worker", function()
    local ticks, echoed, results = 0, nil, nil
    local srv = assert(tsocket.bind("127.0.0.1", 0))
    local _, port = srv:getsockname()
    ts.spawn(function()
      -- LuaSocket's sleep blocks the worker thread for real
      results = {ts.work("require('socket').sleep(0.2) ; return 'slept'")}
    end)
    ts.spawn(function()
      while not results do ts.sleep(0.01); ticks = ticks + 1 end
    end)
    ts.spawn(function()
      local c = assert(srv:accept())
      c:send(assert(c:receive()) .. "\n")
      c:close()
    end)
    ts.spawn(function()
      ts.sleep(0.02)
      local c = assert(tsocket.connect("127.0.0.1", port))
      c:send("ping\n")
      echoed = c:receive()
      c:close()
    end)
    ts.run()
    srv:close()
    assert.same({"slept"}, results)
    assert.equal("ping", echoed)
    assert.is_true(ticks >= 5, "ticks: " .. ticks)
  end)

  it("works from the main chunk, outside any tasklet", function()
    assert.equal(6, ts.work("return 2 * 3"))
  end)

  it("refuses arguments that cannot be copied", function()
    assert.error_matches(function() ts.work("return", coroutine.create(print)) end,
      "cannot send a coroutine %(at arg%)")
  end)

  it("checks its chunk", function()
    assert.error_matches(function() ts.work() end, "bad argument #1 to 'work'")
    assert.error_matches(function() ts.work({}) end, "bad argument #1 to 'work'")
    local up = 1
    assert.error_matches(function() ts.work(function() return up end) end, "upvalue 'up'")
  end)

  it("survives a waiting tasklet being killed", function()
    local gate = ts.xchannel(0)
    local t = ts.spawn(function() return ts.work("local g = ... ; return g:receive(10)", gate) end)
    ts.spawn(function() ts.sleep(0.01); t:kill() end)
    ts.run()
    gate:send("free")  -- the abandoned job ends
    assert.equal(3, ts.work("return 3"))
  end)
end)

describe("tasksock.thread.pool", function()
  local size
  before_each(function() size = ts.thread.pool() end)
  after_each(function() ts.thread.pool(size) end)

  it("has a default size of at least 4", function()
    assert.is_true(size >= 4)
  end)

  it("sets the size and returns the previous one", function()
    assert.equal(size, ts.thread.pool(2))
    assert.equal(2, ts.thread.pool())
  end)

  it("checks the size", function()
    assert.error_matches(function() ts.thread.pool(0) end, "bad argument #1 to 'pool'")
    assert.error_matches(function() ts.thread.pool("x") end, "bad argument #1 to 'pool'")
  end)

  it("runs at most its size of jobs at once", function()
    ts.thread.pool(2)
    local enter, go = ts.xchannel(10), ts.xchannel(10)
    local done = 0
    for _ = 1, 4 do
      ts.spawn(function()
        ts.work("local enter, go = ... ; enter:send(1) ; return go:receive(10)", enter, go)
        done = done + 1
      end)
    end
    local seen
    ts.spawn(function()
      assert(enter:receive(5))
      assert(enter:receive(5))
      seen = {enter:receive(0.05)}  -- a third must wait for a worker
      for _ = 1, 4 do go:send(true) end
    end)
    ts.run()
    assert.same({nil, "timeout"}, seen)
    assert.equal(4, done)
  end)

  it("reuses its worker states", function()
    ts.thread.pool(1)
    ts.work("return")  -- the one worker may have been made earlier
    local a = ts.work("COUNT = (COUNT or 0) + 1 ; return COUNT")
    local b = ts.work("COUNT = (COUNT or 0) + 1 ; return COUNT")
    assert.equal(a + 1, b)
  end)
end)
