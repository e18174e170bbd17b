-- Channels: rendezvous and buffered, close, timeouts, balance, FIFO fairness.
local ts = require "tasksock"

describe("tasksock.channel", function()
  it("checks its capacity", function()
    assert.error_matches(function() ts.channel(-1) end, "bad argument #1 to 'channel'")
    assert.error_matches(function() ts.channel("x") end, "bad argument #1 to 'channel'")
    assert.error_matches(function() ts.channel(1.5) end, "bad argument #1 to 'channel'")
  end)

  it("shows its fill and capacity in tostring", function()
    local ch = ts.channel(3)
    ch:send(1)
    assert.matches("^channel %(1/3%): 0x", tostring(ch))
    ch:close()
    assert.matches("closed", tostring(ch))
  end)
end)

describe("channel:send and channel:receive (rendezvous)", function()
  it("blocks the sender until a receiver takes the value", function()
    local ch = ts.channel()
    local log = {}
    ts.spawn(function() log[#log + 1] = "send"; assert(ch:send("v")); log[#log + 1] = "sent" end)
    ts.spawn(function() ts.sleep(0.01); log[#log + 1] = "recv " .. ch:receive() end)
    ts.run()
    assert.same({"send", "recv v", "sent"}, log)
  end)

  it("blocks the receiver until a sender comes", function()
    local ch = ts.channel()
    local got
    ts.spawn(function() got = {ch:receive()} end)
    ts.spawn(function() ts.sleep(0.01); ch:send(42) end)
    ts.run()
    assert.same({42}, got)
  end)

  it("carries any Lua value, nil included", function()
    local ch = ts.channel()
    local vals = {nil, false, 0, 1.5, "s", {1}, print, coroutine.create(print)}
    local got = {}
    ts.spawn(function() for i = 1, 8 do ch:send(vals[i]) end end)
    ts.spawn(function() for i = 1, 8 do got[i] = ch:receive() end end)
    ts.run()
    for i = 1, 8 do assert.equal(vals[i], got[i]) end
  end)

  it("serves waiting senders and receivers in FIFO order", function()
    local ch = ts.channel()
    local got = {}
    for i = 1, 5 do ts.spawn(function() ch:send(i) end) end
    ts.spawn(function() ts.sleep(0.005); for _ = 1, 5 do got[#got + 1] = ch:receive() end end)
    ts.run()
    assert.same({1, 2, 3, 4, 5}, got)
    local order = {}
    for i = 1, 5 do ts.spawn(function() local v = ch:receive(); order[#order + 1] = i .. "=" .. v end) end
    ts.spawn(function() ts.sleep(0.005); for v = 10, 14 do ch:send(v) end end)
    ts.run()
    assert.same({"1=10", "2=11", "3=12", "4=13", "5=14"}, order)
  end)

  it("works from the main chunk by driving the scheduler", function()
    local ch = ts.channel()
    ts.spawn(function() ts.sleep(0.01); ch:send("hello") end)
    assert.equal("hello", ch:receive())
    ts.spawn(function() ts.sleep(0.01); assert.equal("back", ch:receive()) end)
    assert.is_true(ch:send("back"))
    ts.run()
  end)

  it("reports a deadlock in the main chunk rather than hanging", function()
    local ch = ts.channel()
    assert.error_matches(function() ch:receive() end, "deadlock")
    assert.equal(0, ch:balance())
  end)
end)

describe("channel timeouts", function()
  it("return nil, 'timeout' after the timeout", function()
    local ch = ts.channel()
    local r
    ts.spawn(function()
      local t0 = ts.now()
      r = {ch:receive(0.02)}
      r.dt = ts.now() - t0
    end)
    ts.run()
    assert.same({nil, "timeout"}, {r[1], r[2]})
    assert.is_true(r.dt >= 0.019)
    assert.equal(0, ch:balance())
    assert.same({nil, "timeout"}, {ch:send(1, 0.01)})
    assert.equal(0, ch:balance())
  end)

  it("return at once with timeout 0", function()
    local ch = ts.channel()
    assert.same({nil, "timeout"}, {ch:receive(0)})
    assert.same({nil, "timeout"}, {ch:send(1, 0)})
  end)

  it("are not hit when the value comes in time", function()
    local ch = ts.channel()
    ts.spawn(function() ts.sleep(0.005); ch:send("ok") end)
    assert.equal("ok", ch:receive(1))
  end)

  it("reject bad timeouts", function()
    local ch = ts.channel()
    assert.error_matches(function() ch:receive("soon") end, "bad argument #1 to 'receive'")
    assert.error_matches(function() ch:send(1, {}) end, "bad argument #2 to 'send'")
  end)
end)

describe("channel with capacity", function()
  it("buffers up to capacity without blocking, then blocks", function()
    local ch = ts.channel(2)
    assert.is_true(ch:send(1))
    assert.is_true(ch:send(2))
    assert.same({nil, "timeout"}, {ch:send(3, 0)})
    assert.equal(2, ch:count())
    assert.equal(1, ch:receive())
    assert.is_true(ch:send(3, 0))
    assert.equal(2, ch:receive())
    assert.equal(3, ch:receive())
  end)

  it("moves a blocked sender's value into the buffer as a slot frees", function()
    local ch = ts.channel(1)
    local done = {}
    ts.spawn(function() for i = 1, 4 do ch:send(i) end; done.sender = true end)
    local got = {}
    ts.spawn(function() ts.sleep(0.005); for _ = 1, 4 do got[#got + 1] = ch:receive() end end)
    ts.run()
    assert.same({1, 2, 3, 4}, got)
    assert.is_true(done.sender)
  end)

  it("keeps FIFO order through wrap-around of the ring", function()
    local ch = ts.channel(3)
    local out = {}
    for round = 1, 5 do
      for i = 1, 3 do ch:send(round * 10 + i) end
      for _ = 1, 3 do out[#out + 1] = ch:receive() end
    end
    assert.equal(15, #out)
    for i = 2, #out do assert.is_true(out[i] > out[i - 1]) end
  end)
end)

describe("channel:close", function()
  it("wakes every waiting receiver and sender with nil, 'closed'", function()
    local r, s = ts.channel(), ts.channel()
    local res = {}
    for i = 1, 3 do ts.spawn(function() res["r" .. i] = {r:receive()} end) end
    for i = 1, 2 do ts.spawn(function() res["s" .. i] = {s:send(i)} end) end
    ts.spawn(function() ts.sleep(0.005); r:close(); s:close() end)
    ts.run()
    for i = 1, 3 do assert.same({nil, "closed"}, res["r" .. i]) end
    for i = 1, 2 do assert.same({nil, "closed"}, res["s" .. i]) end
  end)

  it("still delivers buffered values, then says closed", function()
    local ch = ts.channel(2)
    ch:send("a"); ch:send("b")
    ch:close()
    assert.is_true(ch:closed())
    assert.same({nil, "closed"}, {ch:send("c")})
    assert.equal("a", ch:receive())
    assert.equal("b", ch:receive())
    assert.same({nil, "closed"}, {ch:receive()})
  end)
end)

describe("channel:balance", function()
  it("is waiting senders minus waiting receivers", function()
    local ch = ts.channel()
    assert.equal(0, ch:balance())
    for i = 1, 3 do ts.spawn(function() ch:send(i) end) end
    ts.yield()
    assert.equal(3, ch:balance())
    for _ = 1, 3 do ch:receive() end
    assert.equal(0, ch:balance())
    for _ = 1, 2 do ts.spawn(function() ch:receive() end) end
    ts.yield()
    assert.equal(-2, ch:balance())
    ch:close()
    ts.run()
    assert.equal(0, ch:balance())
  end)
end)

describe("channels and nested coroutines", function()
  it("pass scheduler waits through a user's generator inside a tasklet", function()
    local ch = ts.channel()
    local out = {}
    ts.spawn(function()
      local gen = coroutine.wrap(function()
        while true do
          local v = ch:receive()
          if v == nil then return end
          coroutine.yield(v * 2)
        end
      end)
      for _ = 1, 3 do out[#out + 1] = gen() end
    end)
    ts.spawn(function() for i = 1, 3 do ch:send(i) end end)
    ts.run()
    assert.same({2, 4, 6}, out)
  end)

  it("pass through two levels of coroutine.resume", function()
    local ch = ts.channel()
    local res
    ts.spawn(function()
      local inner = coroutine.create(function() return ch:receive() .. "!" end)
      local outer = coroutine.create(function()
        local ok, v = coroutine.resume(inner)
        coroutine.yield("outer saw " .. tostring(ok) .. " " .. v)
      end)
      res = {coroutine.resume(outer)}
    end)
    ts.spawn(function() ts.sleep(0.005); ch:send("deep") end)
    ts.run()
    assert.same({true, "outer saw true deep!"}, res)
  end)

  it("keep plain coroutine semantics: errors, dead coroutines, wrap messages", function()
    local co = coroutine.create(function() error("inner", 0) end)
    assert.same({false, "inner"}, {coroutine.resume(co)})
    assert.same({false, "cannot resume dead coroutine"}, {coroutine.resume(co)})
    local w = coroutine.wrap(function() error("wrapped") end)
    local ok, err = pcall(w)
    assert.is_false(ok)
    assert.matches("wrapped", err)
    assert.error_matches(function() coroutine.resume(42) end, "bad argument #1 to 'resume'")
    assert.same({false, "cannot resume non-suspended coroutine"},
      {coroutine.resume(coroutine.running())})
  end)

  it("give a clear error when a wait cannot yield (C-call boundary)", function()
    local ch = ts.channel()
    local t = ts.spawn(function()
      table.sort({3, 2, 1}, function(a, b) ch:receive(); return a < b end)
    end)
    ts.onerror(function() end)
    ts.run()
    ts.onerror(nil)
    local ok, err = t:join()
    assert.is_false(ok)
    assert.matches("attempt to block across a C%-call boundary", err)
    assert.equal(0, ch:balance())
  end)
end)

-- A tasklet that blocks while others are ready resumes them itself (the
-- handoff in sched.c) and goes on in place when its own turn comes. What
-- users see must be what the scheduler's plain round would give.
describe("handoff between tasklets", function()
  it("keeps the run queue's order: a woken tasklet waits its turn", function()
    local ch, log = ts.channel(), {}
    ts.spawn(function() log[#log + 1] = "a1"; ch:receive(); log[#log + 1] = "a2" end)
    ts.spawn(function() log[#log + 1] = "b1"; ch:send(1); log[#log + 1] = "b2" end)
    ts.spawn(function() log[#log + 1] = "c" end)
    ts.run()
    assert.same({"a1", "b1", "b2", "c", "a2"}, log)
  end)

  it("delivers every value in order over a long ping-pong", function()
    local ping, pong = ts.channel(), ts.channel()
    local got = {}
    ts.spawn(function() for _ = 1, 5000 do pong:send(ping:receive() * 2) end end)
    ts.spawn(function() for i = 1, 5000 do ping:send(i); got[i] = pong:receive() end end)
    ts.run()
    assert.equal(5000, #got)
    for i = 1, 5000 do assert.equal(2 * i, got[i]) end
  end)

  it("lets timers in: two tasklets talking never starve the loop", function()
    local ping, pong = ts.channel(), ts.channel()
    local rounds, rang = 0, false
    ts.spawn(function() ts.sleep(0.02); rang = true end)
    ts.spawn(function()
      while true do
        local v = ping:receive()
        if v == nil then return end
        pong:send(v)
      end
    end)
    local talker = ts.spawn(function()
      while not rang and rounds < 5e6 do ping:send(1); pong:receive(); rounds = rounds + 1 end
      return rang
    end)
    ts.spawn(function() talker:join(); ping:close(); pong:close() end)
    ts.run()
    local ok, r = talker:join()
    assert.is_true(ok)
    assert.is_true(r, "the timer never fired in " .. rounds .. " rounds")
  end)

  it("stops on tasksock.stop from a tasklet it runs", function()
    local ch, log = ts.channel(), {}
    ts.spawn(function() ch:receive(); log[#log + 1] = "a" end)
    ts.spawn(function() ch:send(1); ts.stop(); log[#log + 1] = "b" end)
    ts.run()
    assert.same({"b"}, log)
    ts.run()
    assert.same({"b", "a"}, log)
  end)

  it("raises a kill that a tasklet it runs sent while it waited", function()
    local ch = ts.channel()
    local a = ts.spawn(function() ch:receive(); return "not killed" end)
    ts.spawn(function() a:kill("from b") end)
    ts.run()
    assert.same({false, "from b"}, {a:join()})
    assert.equal(0, ch:balance())
  end)

  it("is unaffected by an error in a tasklet it runs", function()
    local ch = ts.channel()
    local reported = 0
    local old = ts.onerror(function() reported = reported + 1 end)
    local a = ts.spawn(function() return ch:receive() end)
    ts.spawn(function() ch:send("v"); error("boom") end)
    ts.run()
    ts.onerror(old)
    assert.equal(1, reported)
    assert.same({true, "v"}, {a:join()})
  end)

  it("serves join too: the joined tasklet runs, then the joiner goes on with its results", function()
    local log = {}
    local b
    local a = ts.spawn(function()
      log[#log + 1] = "a joins"
      local r = {b:join()}
      log[#log + 1] = "a got " .. tostring(r[2]) .. "," .. tostring(r[3])
      return r[2] + r[3]
    end)
    b = ts.spawn(function() log[#log + 1] = "b runs"; ts.yield(); log[#log + 1] = "b ends"; return 1, 2 end)
    ts.spawn(function() log[#log + 1] = "c runs" end)
    ts.run()
    assert.same({"a joins", "b runs", "c runs", "b ends", "a got 1,2"}, log)
    assert.same({true, 3}, {a:join()})
  end)

  it("shows the waiting tasklet as blocked, with its traceback, to those it runs", function()
    local ch = ts.channel()
    local a = ts.spawn(function() ch:receive() end)
    local seen, tb
    ts.spawn(function()
      for _, info in ipairs(ts.tasklets()) do
        if info.tasklet == a then seen = info end
      end
      tb = ts.traceback(a)
      ch:send(1)
    end)
    ts.run()
    assert.equal("blocked", seen.status)
    assert.equal("channel", seen.waiting)
    assert.matches("receive", tb)
  end)

  it("leaves a tasklet whose coroutine was handed out suspended while others run", function()
    local ch, co, seen = ts.channel(), nil, nil
    ts.spawn(function() co = coroutine.running(); ch:receive() end)
    ts.spawn(function() seen = coroutine.status(co); ch:send(1) end)
    ts.run()
    assert.equal("suspended", seen)
  end)
end)
