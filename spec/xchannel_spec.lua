-- Cross-thread channels: capacity, copying of values, refusals with the
-- path of the bad value, close, timeouts, waiters in other threads, and
-- no message lost, duplicated or reordered per sender.
local ts = require "tasksock"

-- Under valgrind or tsan (TASKSOCK_SLOW) threads run ~25-50x slower, and
-- raising errors (the fuzzing) even more so under tsan: fewer iterations.
local SLOW = os.getenv("TASKSOCK_SLOW") ~= nil

-- Start a thread running src with the given arguments; join it with a
-- bound, failing the test on error or timeout.
local function thread(src, ...)
  local th = ts.thread.start("local ts = require 'tasksock'\n" .. src, ...)
  return function()
    local r = table.pack(th:join(20))
    assert(r[1], r[2])
    return table.unpack(r, 2, r.n)
  end
end

describe("tasksock.xchannel", function()
  it("checks its capacity", function()
    assert.error_matches(function() ts.xchannel(-1) end, "bad argument #1 to 'xchannel'")
    assert.error_matches(function() ts.xchannel("x") end, "bad argument #1 to 'xchannel'")
    assert.error_matches(function() ts.xchannel(1.5) end, "bad argument #1 to 'xchannel'")
  end)

  it("shows its fill and capacity in tostring", function()
    local x = ts.xchannel(3)
    x:send(1)
    assert.matches("^xchannel %(1/3%): 0x", tostring(x))
    x:close()
    assert.matches("closed", tostring(x))
  end)

  it("reports capacity, count and closed", function()
    local x = ts.xchannel(2)
    assert.equal(2, x:capacity())
    assert.equal(0, x:count())
    x:send("a")
    assert.equal(1, x:count())
    assert.is_false(x:closed())
    x:close()
    assert.is_true(x:closed())
  end)

  it("is collected when nothing holds it", function()
    local weak = setmetatable({}, {__mode = "v"})
    weak[1] = ts.xchannel(1)
    weak[1]:send({1, 2})
    collectgarbage()
    collectgarbage()
    assert.is_nil(weak[1])
  end)
end)

describe("xchannel:send", function()
  it("buffers up to its capacity, then times out at once with timeout 0", function()
    local x = ts.xchannel(2)
    assert.is_true(x:send(1))
    assert.is_true(x:send(2))
    assert.same({nil, "timeout"}, {x:send(3, 0)})
    assert.equal(2, x:count())
  end)

  it("times out a blocked sender, and its message is not sent", function()
    local x = ts.xchannel(0)
    local r
    ts.spawn(function() r = {x:send("late", 0.02)} end)
    ts.run()
    assert.same({nil, "timeout"}, r)
    assert.same({nil, "timeout"}, {x:receive(0)})
  end)

  it("copies nil, booleans, integers and floats apart, and any bytes", function()
    local x = ts.xchannel(10)
    local bytes = "a\0b\255\n" .. string.rep("z", 1000)
    for _, v in ipairs({false, true, 3, 3.0, -0.0, 1/0, math.mininteger, bytes}) do
      x:send(v)
      local got = x:receive()
      assert.equal(v, got)
      assert.equal(math.type(v), math.type(got))
    end
    x:send(nil)
    assert.equal(1, x:count())
    local r = table.pack(x:receive(0))
    assert.equal(1, r.n)
    assert.is_nil(r[1])
    assert.equal(0, x:count())
    x:send(0/0)
    local nan = x:receive()
    assert.is_true(nan ~= nan)
  end)

  it("copies nested tables, keeping shared sub-tables shared", function()
    local x = ts.xchannel(1)
    local shared = {k = "v"}
    local v = {1, 2, nil, 4, a = {b = {c = shared}}, s1 = shared, [2.5] = true, [false] = "f"}
    x:send(v)
    local got = x:receive()
    assert.are_not.equal(v, got)
    assert.same(v, got)
    assert.equal(got.s1, got.a.b.c)
    assert.is_true(got[2.5])
  end)

  it("does not copy metatables", function()
    local x = ts.xchannel(1)
    x:send(setmetatable({1}, {__index = function() return "meta" end}))
    local got = x:receive()
    assert.is_nil(getmetatable(got))
    assert.is_nil(got.missing)
  end)

  it("sends xchannels, which arrive as the same channel", function()
    local x, y = ts.xchannel(1), ts.xchannel(1)
    x:send({reply = y, again = y})
    local got = x:receive()
    assert.equal(y, got.reply)
    assert.equal(got.reply, got.again)
  end)

  it("refuses what cannot be copied, naming where it is, and sends nothing", function()
    local x = ts.xchannel(1)
    local cases = {
      {print, "cannot send a function %(at value%)"},
      {{config = {1, 2, function() end}}, "cannot send a function %(at value%.config%[3%]%)"},
      {{["a b"] = {coroutine.create(print)}}, "cannot send a coroutine %(at value%[\"a b\"%]%[1%]%)"},
      {{io.stdout}, "cannot send a userdata %(at value%[1%]%)"},
      {{[print] = 1}, "cannot send a function in a table key %(at value%)"},
    }
    local cyc = {a = {}}
    cyc.a.back = cyc
    cases[#cases + 1] = {cyc, "cannot send a table with a cycle %(at value%.a%.back%)"}
    local deep = {}
    for _ = 1, 200 do deep = {deep} end
    cases[#cases + 1] = {deep, "nested too deeply"}
    for _, c in ipairs(cases) do
      assert.error_matches(function() x:send(c[1]) end, c[2])
      assert.equal(0, x:count())
    end
  end)

  it("fails on a closed channel", function()
    local x = ts.xchannel(1)
    x:close()
    assert.same({nil, "closed"}, {x:send(1)})
  end)

  it("checks its arguments", function()
    local x = ts.xchannel(1)
    assert.error_matches(function() x.send(nil, 1) end, "bad argument #1 to 'send'")
    -- called as methods, Lua numbers the arguments after self
    assert.error_matches(function() x:send() end, "bad argument #1 to 'send' %(value expected%)")
    assert.error_matches(function() x:send(1, "soon") end, "bad argument #2 to 'send'")
  end)
end)

describe("xchannel:receive", function()
  it("times out on an empty channel", function()
    local x = ts.xchannel(1)
    assert.same({nil, "timeout"}, {x:receive(0)})
    local t0 = ts.now()
    assert.same({nil, "timeout"}, {x:receive(0.02)})
    assert.is_true(ts.now() - t0 >= 0.015)
  end)

  it("meets a sender at a rendezvous, between tasklets", function()
    local x = ts.xchannel()
    local log = {}
    ts.spawn(function() log[#log + 1] = "send"; assert(x:send("v")); log[#log + 1] = "sent" end)
    ts.spawn(function() ts.sleep(0.01); log[#log + 1] = "recv " .. x:receive() end)
    ts.run()
    assert.same({"send", "recv v", "sent"}, log)
  end)

  it("blocks the main chunk by driving the loop", function()
    local x = ts.xchannel()
    ts.spawn(function() ts.sleep(0.01); x:send(42) end)
    assert.equal(42, x:receive(5))
  end)

  it("drains buffered messages after close, then fails", function()
    local x = ts.xchannel(3)
    x:send(1)
    x:send(2)
    x:close()
    assert.equal(1, x:receive())
    assert.equal(2, x:receive())
    assert.same({nil, "closed"}, {x:receive()})
  end)

  it("loses no message when a receiving tasklet is killed", function()
    local x = ts.xchannel(1)
    local t = ts.spawn(function() return x:receive() end)
    ts.spawn(function()
      ts.sleep(0.005)
      t:kill()
      x:send("kept")
    end)
    ts.run()
    assert.equal("kept", x:receive(0))
  end)

  it("checks its arguments", function()
    local x = ts.xchannel(1)
    assert.error_matches(function() x.receive({}) end, "bad argument #1 to 'receive'")
    assert.error_matches(function() x:receive("soon") end, "bad argument #1 to 'receive' %(number expected")
  end)
end)

describe("xchannel:close", function()
  it("wakes every waiting tasklet with nil, 'closed'", function()
    local x, full = ts.xchannel(0), ts.xchannel(1)
    full:send("fill")
    local got = {}
    for i = 1, 3 do ts.spawn(function() got[i] = {x:receive()} end) end
    ts.spawn(function() got[4] = {full:send("s")} end)
    ts.spawn(function() ts.sleep(0.01); x:close(); full:close() end)
    ts.run()
    for i = 1, 4 do assert.same({nil, "closed"}, got[i]) end
  end)

  it("wakes waiters in other threads", function()
    local x, ready = ts.xchannel(0), ts.xchannel(1)
    local join = thread([[
      local x, ready = ...
      ready:send(true)
      return x:receive(10)
    ]], x, ready)
    assert.is_true(ready:receive(5))
    ts.sleep(0.02)  -- let it block
    x:close()
    assert.same({nil, "closed"}, {join()})
  end)
end)

describe("xchannel across threads", function()
  it("carries values both ways between threads", function()
    local req, rep = ts.xchannel(0), ts.xchannel(0)
    local join = thread([[
      local req, rep = ...
      for _ = 1, 3 do
        local m = req:receive()
        rep:send({sum = m[1] + m[2], tag = m.tag})
      end
      return "bye"
    ]], req, rep)
    for i = 1, 3 do
      req:send({i, 10, tag = "t" .. i})
      assert.same({sum = i + 10, tag = "t" .. i}, rep:receive(5))
    end
    assert.equal("bye", join())
  end)

  it("keeps the loop alive while a tasklet waits on another thread", function()
    local x = ts.xchannel(0)
    local got
    ts.spawn(function() got = x:receive() end)
    local join = thread([[local x = ... ; require("tasksock").sleep(0.05) ; x:send("late")]], x)
    ts.run()
    join()
    assert.equal("late", got)
  end)

  it("sends an xchannel to another thread, which answers on it", function()
    local x = ts.xchannel(1)
    local join = thread([[
      local x = ...
      local reply = x:receive()
      reply:send("via reply")
    ]], x)
    local reply = ts.xchannel(1)
    x:send(reply)
    assert.equal("via reply", reply:receive(5))
    join()
  end)

  it("loses, duplicates and reorders nothing: 4 senders into one receiver", function()
    local N, T = SLOW and 2500 or 250000, 4
    local x = ts.xchannel(1000)
    local joins = {}
    for id = 1, T do
      joins[id] = thread([[
        local x, id, n = ...
        local base = id * 10000000
        for i = 1, n do assert(x:send(base + i)) end
        return n
      ]], x, id, N)
    end
    local last, sum, count, bad = {0, 0, 0, 0}, 0, 0, 0
    for _ = 1, N * T do
      local v = assert(x:receive(20))
      local id, i = v // 10000000, v % 10000000
      if i ~= last[id] + 1 then bad = bad + 1 end
      last[id] = i
      sum = sum + v
      count = count + 1
    end
    for id = 1, T do assert.equal(N, joins[id]()) end
    local expect = 0
    for id = 1, T do expect = expect + id * 10000000 * N + N * (N + 1) // 2 end
    assert.equal(N * T, count)
    assert.equal(expect, sum)
    assert.equal(0, bad)
    assert.same({nil, "timeout"}, {x:receive(0)})
  end)
end)

describe("message decoding", function()
  -- ts._xencode / ts._xdecode expose the copier for this check only.
  it("rejects malformed input without crashing", function()
    local samples = {
      ts._xencode(1, 2.5, "str", {1, {2}, k = {true, false}}),
      ts._xencode({a = {b = {c = "d"}}, [3] = 4}),
    }
    local t = {}
    samples[#samples + 1] = ts._xencode({t, t, {t}})
    math.randomseed(7)
    local ok, failed = 0, 0
    local function try(s)
      local good, err = pcall(ts._xdecode, s)
      if good then ok = ok + 1
      else
        assert.matches("invalid message", err)
        failed = failed + 1
      end
    end
    for _, s in ipairs(samples) do
      assert.is_true(pcall(ts._xdecode, s))
      for cut = 0, #s - 1 do try(s:sub(1, cut)) end
      for _ = 1, SLOW and 100 or 2000 do
        local pos = math.random(#s)
        local b = string.char(math.random(0, 255))
        try(s:sub(1, pos - 1) .. b .. s:sub(pos + 1))
      end
    end
    for _ = 1, SLOW and 250 or 5000 do
      local n = math.random(0, 40)
      local bytes = {}
      for i = 1, n do bytes[i] = string.char(math.random(0, 255)) end
      try(table.concat(bytes))
    end
    try("\1\6\255\255\255\127\0\0\0\0")  -- a huge array announced
    try("\1\7\0")                         -- a reference to nothing
    try("\1\8\0")                         -- an xchannel it does not have
    assert.is_true(failed > 0)
  end)

  it("round-trips what it encodes", function()
    local v = {1, "two", {3.0}, x = {y = false}}
    local a, b, c = ts._xdecode(ts._xencode(v, nil, 7))
    assert.same(v, a)
    assert.is_nil(b)
    assert.equal(7, c)
  end)
end)
