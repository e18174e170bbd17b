-- Tasklets: spawn, run, join, kill, status, name, sleep, yield, errors.
local ts = require "tasksock"

describe("tasksock.spawn", function()
  it("returns a ready tasklet that runs only when the scheduler runs", function()
    local ran = false
    local t = ts.spawn(function() ran = true end)
    assert.equal("ready", t:status())
    assert.is_false(ran)
    ts.run()
    assert.is_true(ran)
    assert.equal("dead", t:status())
  end)

  it("passes arguments, nil included, and join returns all results", function()
    local t = ts.spawn(function(...) return select("#", ...), ... end, 1, nil, "x", nil)
    ts.run()
    local r = table.pack(t:join())
    assert.equal(6, r.n)
    assert.same({true, 4, 1, nil, "x", nil}, {table.unpack(r, 1, r.n)})
  end)

  it("accepts a callable table", function()
    local obj = setmetatable({}, {__call = function(_, a) return a * 2 end})
    local t = ts.spawn(obj, 21)
    ts.run()
    assert.same({true, 42}, {t:join()})
  end)

  it("rejects a non-callable first argument naming it", function()
    assert.error_matches(function() ts.spawn(42) end, "bad argument #1 to 'spawn'.*function expected")
    assert.error_matches(function() ts.spawn() end, "bad argument #1 to 'spawn'")
  end)

  it("runs tasklets in FIFO order, round-robin on yield", function()
    local log = {}
    for i = 1, 3 do
      ts.spawn(function()
        for r = 1, 3 do log[#log + 1] = i .. ":" .. r; ts.yield() end
      end)
    end
    ts.run()
    assert.same({"1:1", "2:1", "3:1", "1:2", "2:2", "3:2", "1:3", "2:3", "3:3"}, log)
  end)

  it("treats a plain coroutine.yield in a tasklet like ts.yield", function()
    local log = {}
    ts.spawn(function() log[#log + 1] = "a1"; coroutine.yield(); log[#log + 1] = "a2" end)
    ts.spawn(function() log[#log + 1] = "b1" end)
    ts.run()
    assert.same({"a1", "b1", "a2"}, log)
  end)

  it("runs 100,000 tasklets to completion", function()
    local n, N = 0, 100000
    for _ = 1, N do ts.spawn(function() n = n + 1 end) end
    ts.run()
    assert.equal(N, n)
  end)

  it("runs 10,000 tasklets that all sleep at once", function()
    local n = 0
    for i = 1, 10000 do ts.spawn(function() ts.sleep(0.001 * (i % 5)); n = n + 1 end) end
    ts.run()
    assert.equal(10000, n)
  end)
end)

describe("tasklet.name", function()
  it("can be set, read and shows in tostring", function()
    local t = ts.spawn(function() end)
    assert.is_nil(t.name)
    t.name = "worker-1"
    assert.equal("worker-1", t.name)
    assert.matches("^tasklet 'worker%-1' %(ready%): 0x", tostring(t))
    ts.run()
    assert.matches("%(dead%)", tostring(t))
  end)

  it("refuses other fields and non-string names", function()
    local t = ts.spawn(function() end)
    assert.error_matches(function() t.foo = 1 end, "only 'name' can be set")
    assert.error_matches(function() t.name = 5 end, "string expected")
    ts.run()
  end)
end)

describe("what a dead tasklet keeps", function()
  -- A tasklet has one user value: its coroutine; its error once it failed;
  -- a table of coroutine, name and error once it has a name or a kill
  -- reason. Each way to get there keeps what join, name and tostring say.
  local function fails(err) return function() error(err, 0) end end

  it("a failure's error, named before, after or never, and any kind of value", function()
    local etab = {}
    local plain, before, after = ts.spawn(fails("e1")), ts.spawn(fails(etab)), ts.spawn(fails(false))
    before.name = "before"
    local old = ts.onerror(function() end)
    ts.run()
    ts.onerror(old)
    after.name = "after"
    collectgarbage(); collectgarbage()
    assert.same({false, "e1"}, {plain:join()})
    assert.is_nil(plain.name)
    local ok, e = before:join()
    assert.is_false(ok)
    assert.equal(etab, e)
    assert.equal("before", before.name)
    assert.same({false, false}, {after:join()})
    assert.equal("after", after.name)
    after.name = nil
    assert.is_nil(after.name)
    assert.same({false, false}, {after:join()})
    assert.matches("^tasklet %(dead%)", tostring(after))
  end)

  it("the error for the error handler's own join", function()
    local got
    local old = ts.onerror(function(t) got = { t:join() } end)
    ts.spawn(fails("seen"))
    ts.run()
    ts.onerror(old)
    assert.same({false, "seen"}, got)
  end)

  it("the error of a tasklet whose coroutine Lua code holds (never pooled)", function()
    local co
    local t = ts.spawn(function() co = coroutine.running(); error("held", 0) end)
    local old = ts.onerror(function() end)
    ts.run()
    ts.onerror(old)
    collectgarbage(); collectgarbage()
    assert.equal("dead", coroutine.status(co))
    assert.same({false, "held"}, {t:join()})
    assert.same({false, "held"}, {t:join()})
  end)

  it("the first error when a to-be-closed variable raises another", function()
    local t = ts.spawn(function()
      local _ <close> = setmetatable({}, { __close = function() error("in close", 0) end })
      error("first", 0)
    end)
    local old = ts.onerror(function() end)
    ts.run()
    ts.onerror(old)
    assert.same({false, "first"}, {t:join()})
  end)

  it("a kill's reason, and a name given before or after", function()
    local a = ts.spawn(ts.sleep, 10)
    local b = ts.spawn(ts.sleep, 10)
    a.name = "a"
    local killer = ts.spawn(function()
      ts.yield()
      a:kill("reason-a")
      b:kill({ "reason-b" })
    end)
    ts.run()
    b.name = "b"
    collectgarbage(); collectgarbage()
    assert.same({false, "reason-a"}, {a:join()})
    local ok, r = b:join()
    assert.is_false(ok)
    assert.same({ "reason-b" }, r)
    assert.equal("a", a.name)
    assert.equal("b", b.name)
    assert.equal("dead", killer:status())
  end)

  it("its name after its coroutine went to a new tasklet", function()
    local t = ts.spawn(function() end)
    t.name = "first"
    ts.run()
    local u = ts.spawn(function() return coroutine.running() end)
    ts.run()
    collectgarbage(); collectgarbage()
    assert.equal("first", t.name)
    assert.same({true}, {t:join()})
    assert.is_true(u:join())
  end)
end)

describe("tasklet:join", function()
  it("waits for the tasklet inside another tasklet", function()
    local a = ts.spawn(function() ts.sleep(0.02); return "done" end)
    local got
    ts.spawn(function() got = {a:join()} end)
    ts.run()
    assert.same({true, "done"}, got)
  end)

  it("drives the scheduler when called from the main chunk", function()
    local a = ts.spawn(function() ts.sleep(0.01); return 7 end)
    assert.same({true, 7}, {a:join()})
  end)

  it("returns nil, 'timeout' when the timeout expires first", function()
    local a = ts.spawn(function() ts.sleep(0.2) end)
    local t0 = ts.now()
    assert.same({nil, "timeout"}, {a:join(0.02)})
    assert.is_true(ts.now() - t0 >= 0.019)
    assert.equal("blocked", a:status())
    a:kill()
    ts.run()
  end)

  it("returns nil, 'timeout' at once with timeout 0", function()
    local a = ts.spawn(function() end)
    assert.same({nil, "timeout"}, {a:join(0)})
    ts.run()
    assert.same({true}, {a:join(0)})
  end)

  it("returns false and the error of a failed tasklet", function()
    ts.onerror(function() end)
    local a = ts.spawn(function() error({code = 5}) end)
    ts.run()
    local ok, err = a:join()
    assert.is_false(ok)
    assert.same({code = 5}, err)
    ts.onerror(nil)
  end)

  it("lets several tasklets join the same one", function()
    local a = ts.spawn(function() ts.sleep(0.01); return 1 end)
    local n = 0
    for _ = 1, 5 do ts.spawn(function() if a:join() then n = n + 1 end end) end
    ts.run()
    assert.equal(5, n)
  end)

  it("refuses to join itself", function()
    local err
    local t = ts.spawn(function()
      local ok, e = pcall(function() return ts.current():join() end)
      err = e
      return ok
    end)
    ts.run()
    assert.matches("cannot join itself", err)
    assert.same({true, false}, {t:join()})
  end)

  it("checks its arguments", function()
    local t = ts.spawn(function() end)
    assert.error_matches(function() t.join(42) end, "bad argument #1 to 'join'")
    assert.error_matches(function() t:join("x") end, "bad argument #1 to 'join'.*number expected")
    ts.run()
  end)
end)

describe("tasklet:kill", function()
  it("raises at the blocking point so cleanup runs, and join reports the reason", function()
    local cleaned = false
    local t = ts.spawn(function()
      local _guard <close> = setmetatable({}, {__close = function() cleaned = true end})
      ts.sleep(10)
    end)
    ts.yield()
    assert.equal("blocked", t:status())
    assert.is_true(t:kill("stop now"))
    ts.run()
    assert.is_true(cleaned)
    assert.same({false, "stop now"}, {t:join()})
  end)

  it("can be caught with pcall", function()
    local t = ts.spawn(function()
      local ok, e = pcall(ts.sleep, 10)
      return ok, e
    end)
    ts.yield()
    t:kill()
    ts.run()
    assert.same({true, false, "killed"}, {t:join()})
  end)

  it("kills a tasklet that has not started without running it", function()
    local ran = false
    local t = ts.spawn(function() ran = true end)
    assert.is_true(t:kill())
    ts.run()
    assert.is_false(ran)
    assert.same({false, "killed"}, {t:join()})
  end)

  it("kills a tasklet blocked on a channel receive, send and join", function()
    local ch, ch2 = ts.channel(), ts.channel()
    local other = ts.spawn(function() ts.sleep(10) end)
    local r = ts.spawn(function() return ch:receive() end)
    local s = ts.spawn(function() return ch2:send(1) end)
    local j = ts.spawn(function() return other:join() end)
    ts.yield()
    assert.equal(-1, ch:balance())
    assert.equal(1, ch2:balance())
    for _, t in ipairs{r, s, j, other} do assert.equal("blocked", t:status()) end
    r:kill(); s:kill(); j:kill(); other:kill()
    ts.run()
    assert.equal(0, ch:balance())
    assert.equal(0, ch2:balance())
    for _, t in ipairs{r, s, j, other} do assert.same({false, "killed"}, {t:join()}) end
  end)

  it("kills a tasklet blocked inside its own nested coroutine", function()
    local t = ts.spawn(function()
      local gen = coroutine.wrap(function() ts.sleep(10); coroutine.yield(1) end)
      gen()
      return "not reached"
    end)
    ts.yield()
    t:kill("k")
    ts.run()
    assert.same({false, "k"}, {t:join()})
  end)

  it("kills itself at once", function()
    local after = false
    local t = ts.spawn(function() ts.current():kill("self"); after = true end)
    ts.run()
    assert.is_false(after)
    assert.same({false, "self"}, {t:join()})
  end)

  it("returns false on a dead tasklet", function()
    local t = ts.spawn(function() end)
    ts.run()
    assert.is_false(t:kill())
  end)

  it("does not report a kill as an error", function()
    local reported = 0
    ts.onerror(function() reported = reported + 1 end)
    local t = ts.spawn(function() ts.sleep(10) end)
    ts.yield()
    t:kill()
    ts.run()
    ts.onerror(nil)
    assert.equal(0, reported)
  end)
end)

describe("tasklet:status", function()
  it("goes ready, running, blocked, dead", function()
    local seen
    local t
    t = ts.spawn(function() seen = t:status(); ts.sleep(0.01) end)
    assert.equal("ready", t:status())
    ts.yield()
    assert.equal("running", seen)
    assert.equal("blocked", t:status())
    assert.equal("sleep", t.waiting)
    ts.run()
    assert.equal("dead", t:status())
  end)
end)

describe("tasksock.current", function()
  it("is the running tasklet, nil in the main chunk", function()
    assert.is_nil(ts.current())
    local t, inside
    t = ts.spawn(function() inside = ts.current() end)
    ts.run()
    assert.equal(t, inside)
  end)
end)

describe("tasksock.sleep", function()
  it("suspends only the calling tasklet", function()
    local ticks = 0
    ts.spawn(function() for _ = 1, 5 do ticks = ticks + 1; ts.sleep(0.005) end end)
    local t0 = ts.now()
    ts.spawn(function() ts.sleep(0.05) end)
    ts.run()
    assert.equal(5, ticks)
    assert.is_true(ts.now() - t0 >= 0.049)
  end)

  it("wakes sleepers in deadline order", function()
    local log = {}
    for _, d in ipairs{0.03, 0.01, 0.02} do ts.spawn(function() ts.sleep(d); log[#log + 1] = d end) end
    ts.run()
    assert.same({0.01, 0.02, 0.03}, log)
  end)

  it("wakes hundreds of sleepers and timed waits in deadline order while others are killed", function()
    -- the timer heap: adds in a scrambled order, removals from its middle.
    -- A deadline counts from when its tasklet begins to wait: each records
    -- it (ts.now() a moment before the wait takes its own, hence the slack)
    local N, log, at, ch, ws = 400, {}, {}, ts.channel(), {}
    for k = 1, N do
      local i = (k * 173) % N + 1  -- a permutation of 1..N
      local d = i * 0.0005
      ws[k] = ts.spawn(function()
        at[i] = ts.now() + d
        if i % 2 == 0 then ts.sleep(d) else ch:receive(d) end
        log[#log + 1] = i
      end)
      ws[k].name = tostring(i)
    end
    ts.yield()
    local want = {}
    for k = 1, N do
      local i = tonumber(ws[k].name)
      if i % 3 == 0 then ws[k]:kill() else want[i] = true end
    end
    ts.run()
    for n = 1, #log do
      assert.is_true(want[log[n]], "woke one that was killed or twice")
      want[log[n]] = nil
      if n > 1 then
        assert(at[log[n - 1]] <= at[log[n]] + 1e-4,
               ("%d (due %.6f) woke before %d (due %.6f)"):format(log[n - 1], at[log[n - 1]], log[n], at[log[n]]))
      end
    end
    assert.is_nil(next(want), "one was never woken")
  end)

  it("never returns early, in the main chunk too", function()
    for _, d in ipairs{0.001, 0.01, 0.03} do
      local t0 = ts.now()
      ts.sleep(d)
      assert.is_true(ts.now() - t0 >= d, "slept less than " .. d)
    end
  end)

  it("checks its argument", function()
    assert.error_matches(function() ts.sleep() end, "bad argument #1 to 'sleep'")
    assert.error_matches(function() ts.sleep("x") end, "bad argument #1 to 'sleep'")
    assert.error_matches(function() ts.sleep(0/0) end, "bad argument #1 to 'sleep'")
  end)
end)

describe("tasksock.run", function()
  it("returns at once with no tasklets", function()
    ts.run()
  end)

  it("reports a deadlock instead of hanging", function()
    local ch = ts.channel()
    local t = ts.spawn(function() ch:receive() end)
    assert.error_matches(function() ts.run() end, "deadlock: 1 tasklet")
    t:kill()
    ts.run()
  end)

  it("cannot be called from inside a tasklet", function()
    local t = ts.spawn(function() ts.run() end)
    ts.onerror(function() end)
    ts.run()
    ts.onerror(nil)
    local ok, err = t:join()
    assert.is_false(ok)
    assert.matches("called from inside a tasklet", err)
  end)

  it("stops early on tasksock.stop and can be resumed", function()
    local n = 0
    local t = ts.spawn(function() for _ = 1, 10 do n = n + 1; if n == 3 then ts.stop() end; ts.yield() end end)
    ts.run()
    assert.is_true(n < 10)
    ts.run()
    assert.equal(10, n)
    assert.equal("dead", t:status())
  end)

  it("lets timers in while a tasklet works long between its yields", function()
    -- 300 turns of 1 ms of CPU each: the loop's 1,024 turns between two
    -- polls would keep the 5 ms timer waiting until all are done; its time
    -- limit (10 ms) lets it in after a few dozen
    local turns, at = 0, nil
    ts.spawn(function()
      for _ = 1, 300 do
        local t0 = os.clock()
        repeat until os.clock() - t0 >= 0.001
        turns = turns + 1
        ts.yield()
      end
    end)
    ts.spawn(function() ts.sleep(0.005); at = turns end)
    ts.run()
    assert.is_true(at < 150, "the timer waited for " .. tostring(at) .. " turns")
  end)
end)

describe("errors in tasklets", function()
  it("do not stop the scheduler and reach the handler with name and traceback", function()
    local got
    ts.onerror(function(t, err, tb) got = {t = t, err = err, tb = tb} end)
    local bad = ts.spawn(function() local x = nil; return x.field end)
    bad.name = "bad-one"
    local good = ts.spawn(function() ts.sleep(0.01); return "fine" end)
    ts.run()
    ts.onerror(nil)
    assert.equal(bad, got.t)
    assert.matches("attempt to index a nil value", got.err)
    assert.matches("stack traceback", got.tb)
    assert.same({true, "fine"}, {good:join()})
  end)

  it("go to stderr with the tasklet's name by default", function()
    local dir = os.getenv("TMPDIR") or "/tmp"
    local out = dir .. "/tasksock-err-" .. tostring(os.time()) .. math.random(1e6)
    local script = [[
      local ts = require "tasksock"
      local t = ts.spawn(function() error("kaboom") end)
      t.name = "named"
      ts.run()
      print("still running")
    ]]
    local cmd = string.format(
      'LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" lua5.4 -e %q >%s.out 2>%s.err',
      script, out, out)
    assert.is_true(os.execute(cmd))
    local o = io.open(out .. ".out"):read("a")
    local e = io.open(out .. ".err"):read("a")
    os.remove(out .. ".out"); os.remove(out .. ".err")
    assert.equal("still running\n", o)
    assert.matches("tasklet 'named' failed: .*kaboom", e)
    assert.matches("stack traceback", e)
  end)
end)

describe("blocking where it cannot", function()
  it("raises a clear error inside the error handler, which runs on the loop", function()
    local got
    ts.onerror(function()
      local ok, err = pcall(ts.sleep, 0.01)
      got = {ok, err}
    end)
    ts.spawn(function() error("x") end)
    ts.run()
    ts.onerror(nil)
    assert.is_false(got[1])
    assert.matches("attempt to block outside any tasklet while the loop runs", got[2])
  end)

  it("raises a clear error across a C-call boundary inside a tasklet", function()
    -- string.gsub's callback cannot yield
    local t = ts.spawn(function() ("a"):gsub("a", function() ts.sleep(0.01) end) end)
    ts.onerror(function() end)
    ts.run()
    ts.onerror(nil)
    local ok, err = t:join()
    assert.is_false(ok)
    assert.matches("attempt to block across a C%-call boundary", err)
  end)

  it("lets a coroutine resumed from the main chunk block: the loop is driven", function()
    local ticks = 0
    ts.spawn(function() for _ = 1, 3 do ticks = ticks + 1; ts.sleep(0.002) end end)
    local co = coroutine.create(function() ts.sleep(0.02); return "woke" end)
    assert.same({true, "woke"}, {coroutine.resume(co)})
    assert.equal(3, ticks)
  end)
end)

describe("tasksock.stop", function()
  it("regression: stop from a tasklet while the main chunk joins does not freeze the scheduler", function()
    local t = ts.spawn(function() ts.stop(); ts.sleep(0.01); return "finished" end)
    assert.same({true, "finished"}, {t:join(5)})
  end)

  it("does nothing outside ts.run: a later run runs to the end", function()
    ts.stop()
    local n = 0
    ts.spawn(function() for _ = 1, 3 do n = n + 1; ts.yield() end end)
    ts.run()
    assert.equal(3, n)
  end)
end)

-- A finished tasklet's coroutine is kept for the next spawn (a spawn then
-- allocates no Lua thread); nothing of the old tasklet may show through.
describe("tasklet coroutines reused", function()
  local function churn(n)
    for _ = 1, n do ts.spawn(function() end) end
    ts.run()
  end

  it("are kept up to a bound, and taken by new tasklets", function()
    churn(300)
    assert.equal(256, ts.stats().pooled)
    local ts_ = {}
    for i = 1, 10 do ts_[i] = ts.spawn(function() end) end
    assert.equal(246, ts.stats().pooled)
    ts.run()
    assert.equal(256, ts.stats().pooled)
    for i = 1, 10 do assert.equal("dead", ts_[i]:status()) end
  end)

  -- Runs f in a tasklet while every pooled coroutine is taken by a
  -- tasklet that waits: the next spawns get what dies in f, or new ones.
  local function withemptypool(f)
    churn(300)
    local gate = ts.channel()
    local t = ts.spawn(function()
      for _ = 1, ts.stats().pooled do ts.spawn(function() gate:receive() end) end
      ts.yield()
      local ok, err = pcall(function()
        assert.equal(0, ts.stats().pooled)
        f()
      end)
      gate:close()
      assert(ok, err)
    end)
    ts.run()
    assert.same({true}, {t:join()})
  end

  local function runall(fs)
    local t = {}
    for i, f in ipairs(fs) do t[i] = ts.spawn(f, i) end
    for i = 1, #t do t[i]:join() end
    return t
  end

  it("never reuse a coroutine that coroutine.running handed out", function()
    withemptypool(function()
      local held, now, fs = {}, {}, {}
      for i = 1, 20 do fs[i] = function() held[i] = coroutine.running() end end
      runall(fs)
      for i = 1, 20 do fs[i] = function() now[i] = coroutine.running() end end
      runall(fs)
      local seen = {}
      for i = 1, 20 do
        assert.equal("dead", coroutine.status(held[i]))
        seen[held[i]] = true
      end
      for i = 1, 20 do assert.is_nil(seen[now[i]]) end
    end)
  end)

  it("hand out a coroutine to reuse only after its tasklet finished", function()
    withemptypool(function()
      local fs = {}
      for i = 1, 10 do fs[i] = function() end end
      runall(fs)
      assert.equal(10, ts.stats().pooled)
      for i = 1, 10 do fs[i] = function(x) return x * 2 end end
      local t = runall(fs)
      assert.equal(0, ts.stats().pooled)  -- their results wait there for join
      for i = 1, 10 do assert.same({true, i * 2}, {t[i]:join()}) end
    end)
  end)

  it("keep a tasklet's results for join: a returning tasklet's coroutine is not reused", function()
    local ts_ = {}
    for i = 1, 30 do ts_[i] = ts.spawn(function() return i, "r" .. i end) end
    ts.run()
    churn(600)
    for i = 1, 30 do assert.same({true, i, "r" .. i}, {ts_[i]:join()}) end
  end)

  it("do not carry a hook set in a finished tasklet into the next one", function()
    local lines = 0
    ts.spawn(function()
      debug.sethook(function() lines = lines + 1 end, "l")  -- this coroutine only
      local x = 1
      x = x + 1
      assert(x == 2)  -- returns nothing: its coroutine is pooled
    end)
    ts.run()
    local before = lines
    assert.is_true(before > 0)
    for _ = 1, 20 do
      ts.spawn(function()
        local y = 0
        for k = 1, 10 do y = y + k end
      end)
    end
    ts.run()
    assert.equal(before, lines)
  end)

  it("start clean after a failure, a kill and a to-be-closed variable", function()
    ts.onerror(function() end)
    local closed = 0
    local t1 = ts.spawn(function()
      local _ <close> = setmetatable({}, {__close = function() closed = closed + 1 end})
      error("boom")
    end)
    local t2 = ts.spawn(function() ts.sleep(10) end)
    ts.spawn(function() t2:kill("stop") end)
    ts.run()
    ts.onerror(nil)
    assert.equal(1, closed)
    assert.same({false, "stop"}, {t2:join()})
    local ok, err = t1:join()
    assert.is_false(ok)
    assert.matches("boom", err)
    local got = {}
    for i = 1, 10 do
      ts.spawn(function(a, b) got[i] = {select("#", a, b), a, b, ts.traceback(ts.current())} end, i)
    end
    ts.run()
    for i = 1, 10 do
      assert.equal(2, got[i][1])
      assert.equal(i, got[i][2])
      assert.is_nil(got[i][3])
    end
    assert.equal("x\nstack traceback:", ts.traceback(t1, "x"))
  end)
end)
