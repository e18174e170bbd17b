-- Garbage collection and kills while operations are pending: every kind of
-- blocking call (TCP receive/accept/send/connect/select, Unix-domain
-- receive, UDP receive, channel send/receive, DNS, sleep, join, xchannel
-- send/receive, thread join, work) is left waiting while the collector runs
-- at every step, or while tasklets are killed at random points (a seeded
-- PRNG: the seed is printed, TASKSOCK_SEED=n repeats a run); errors are
-- thrown inside tasklets that hold sockets. Nothing may crash, lose a
-- message, or leave a descriptor, socket or tasklet behind.
local ts = require "tasksock"
local socket = require "tasksock.socket"
local unix = require "tasksock.unix"
local F = require "spec.helper.fault"

local dns = socket.dns
local pack = table.pack

-- Collect at every step: a count hook on the running thread, which the
-- tasklets spawned from it inherit (a full collection every `full` calls,
-- an incremental step otherwise).
local collections = 0
local function gchook(every, full)
  local n = 0
  debug.sethook(function()
    n = n + 1
    collections = collections + 1
    if n % full == 0 then collectgarbage() else collectgarbage("step") end
  end, "", every)
end

local function tmppath()
  local p = os.tmpname()
  os.remove(p)
  return p
end

local BIG = string.rep("g", 1024 * 1024)

-- Every kind of pending operation: run() blocks until complete() (started
-- in a tasklet of its own) lets it finish, and returns what expect says;
-- cleanup() closes what the kind opened. Fresh objects on every call.
local function kinds()
  local list = {}
  local function add(name, k) k.name = name list[#list + 1] = k end

  do
    local c, a = F.pair()
    add("tcp receive", {
      run = function() return a:receive("*l") end,
      complete = function() c:send("line\n") end,
      expect = "line",
      cleanup = function() c:close() a:close() end,
    })
  end
  do
    local srv, port = F.listen()
    add("tcp accept", {
      run = function()
        local x = assert(srv:accept())
        x:settimeout(F.time(2))
        local line = x:receive()
        x:close()
        return line
      end,
      complete = function()
        local x = socket.connect("127.0.0.1", port)
        if x then x:send("hi\n") x:close() end
      end,
      expect = "hi",
      cleanup = function() srv:close() end,
    })
  end
  do
    local c, a = F.pair()
    add("tcp send", {
      run = function() return c:send(BIG) end,
      complete = function()
        a:settimeout(F.time(0.2), "t")  -- short: the sender may be dead
        a:receive(#BIG)
      end,
      expect = #BIG,
      cleanup = function() c:close() a:close() end,
    })
  end
  do
    local srv, port = F.listen()
    add("tcp connect", {
      run = function()
        local x = assert(socket.connect("127.0.0.1", port))
        return x:close()
      end,
      complete = function() end,
      expect = 1,
      cleanup = function() srv:close() end,
    })
  end
  do
    local c, a = F.pair()
    add("select", {
      run = function() return #socket.select({ a }, nil, F.time(5)) end,
      complete = function() c:send("x") end,
      expect = 1,
      cleanup = function() c:close() a:close() end,
    })
  end
  do
    local path = tmppath()
    local s = unix()
    assert(s:bind(path))
    assert(s:listen())
    local c = unix.stream()
    assert(c:connect(path))
    local a = assert(s:accept())
    add("unix receive", {
      run = function() return a:receive(5) end,
      complete = function() c:send("unix!") end,
      expect = "unix!",
      cleanup = function() c:close() a:close() s:close() os.remove(path) end,
    })
  end
  do
    local u = socket.udp()
    assert(u:setsockname("127.0.0.1", 0))
    local _, uport = u:getsockname()
    add("udp receive", {
      run = function() return u:receive() end,
      complete = function()
        local v = socket.udp()
        v:sendto("dgram", "127.0.0.1", uport)
        v:close()
      end,
      expect = "dgram",
      cleanup = function() u:close() end,
    })
  end
  do
    local ch = ts.channel()
    add("channel receive", {
      run = function() return ch:receive().n end,  -- a table only the channel holds
      complete = function() ch:send({ n = 7 }, 0.05) end,
      expect = 7,
      cleanup = function() ch:close() end,
    })
  end
  do
    local ch = ts.channel()
    add("channel send", {
      run = function() return ch:send({ k = "v" }) end,
      complete = function()
        local v = ch:receive(0.05)
        assert(v == nil or v.k == "v")
      end,
      expect = true,
      cleanup = function() ch:close() end,
    })
  end
  add("dns getaddrinfo", {
    run = function() return type(dns.getaddrinfo("localhost")[1].addr) end,
    complete = function() end,
    expect = "string",
    cleanup = function() end,
  })
  add("dns toip", {
    run = function() return dns.toip("localhost") end,
    complete = function() end,
    expect = "127.0.0.1",
    cleanup = function() end,
  })
  add("sleep", {
    run = function() ts.sleep(0.02) return "slept" end,
    complete = function() end,
    expect = "slept",
    cleanup = function() end,
  })
  do
    local other = ts.spawn(function() ts.sleep(0.02) return "other" end)
    add("tasklet join", {
      run = function() return select(2, other:join()) end,
      complete = function() end,
      expect = "other",
      cleanup = function() other:kill() end,
    })
  end
  do
    local x = ts.xchannel()
    local th
    add("xchannel receive", {
      run = function() return x:receive()[3] end,
      complete = function()
        th = ts.thread.start(function(xc, t) return xc:send({ 1, 2, 3 }, t) end, x, F.time(0.2))
      end,
      expect = 3,
      cleanup = function() if th then th:join() end x:close() end,
    })
  end
  do
    local x = ts.xchannel()
    local th
    add("xchannel send", {
      run = function() return x:send({ "v" }) end,
      complete = function()
        th = ts.thread.start(function(xc, t) return xc:receive(t) end, x, F.time(0.2))
      end,
      expect = true,
      cleanup = function() if th then th:join() end x:close() end,
    })
  end
  do
    local th = ts.thread.start(function()
      require("tasksock").sleep(0.02)
      return "thread"
    end)
    add("thread join", {
      run = function() return select(2, th:join()) end,
      complete = function() end,
      expect = "thread",
      cleanup = function() th:join() end,
    })
  end
  add("work", {
    run = function() return ts.work(function(a) return a * 2 end, 21) end,
    complete = function() end,
    expect = 42,
    cleanup = function() end,
  })
  return list
end

-- One round: start every kind, then complete them after a while (kill is
-- a function(tasklets) run in between, or nil); returns the kinds with
-- their tasklets' join results.
local function round(kill, gc)
  local list = kinds()
  local collector, stop = nil, false
  if gc then  -- a full collection at every turn of the scheduler
    collector = ts.spawn(function()
      while not stop do
        collectgarbage()
        collections = collections + 1
        if F.SLOW then ts.sleep(0.005) else ts.yield() end
      end
    end)
  end
  for _, k in ipairs(list) do k.t = ts.spawn(k.run) end
  ts.yield()
  if kill then kill(list) end
  local completers = {}
  for i, k in ipairs(list) do completers[i] = ts.spawn(k.complete) end
  for _, k in ipairs(list) do
    -- bounded: what was killed mid-way needs no completion
    local deadline = ts.now() + F.time(3)
    while k.t:status() ~= "dead" and ts.now() < deadline do ts.sleep(0.002) end
    if k.t:status() ~= "dead" then k.t:kill("hung") end
    k.res = pack(k.t:join())
  end
  for _, t in ipairs(completers) do t:join() end
  stop = true
  if collector then collector:join() end
  for _, k in ipairs(list) do k.cleanup() end
  return list
end

describe("pending operations", function()
  it("complete while the collector runs at every step", function()
    local before
    F.run(function()
      before = F.snapshot()
      local c0 = collections
      gchook(F.SLOW and 50 or 10, 50)
      local list = round(nil, true)
      debug.sethook()
      assert.is_true(collections - c0 > (F.SLOW and 20 or 100), "the collector ran " .. collections - c0 .. " times")
      print(("\n  %d collector steps"):format(collections - c0))
      for _, k in ipairs(list) do
        assert.same({ true, k.expect, n = 2 }, { k.res[1], k.res[2], n = 2 }, k.name)
      end
      F.same(before)
    end, 60)
    debug.sethook()
  end)

  it("survive kills at random points, with the collector running at every step", function()
    local seed = F.seed("random kills")
    local rnd = math.random
    F.run(function()
      local before = F.snapshot()
      local killed = 0
      for r = 1, F.scale(8, 4) do
        if r % 2 == 0 then gchook(20, 50) end
        local list = round(function(l)
          for _ = 1, rnd(4) do
            if rnd(2) == 1 then ts.yield() else ts.sleep(rnd() * 0.005) end
            local k = l[rnd(#l)]
            if k.t:status() ~= "dead" then k.t:kill("random kill") killed = killed + 1 end
          end
        end, r % 4 == 0)
        debug.sethook()
        for _, k in ipairs(list) do
          local ok, v = k.res[1], k.res[2]
          -- killed (where it waited), or done: with its result
          assert.is_true((ok == false and v == "random kill") or (ok and v == k.expect),
                         ("seed %d round %d %s: %s, %s"):format(seed, r, k.name,
                          tostring(ok), tostring(v)))
        end
      end
      assert.is_true(killed > 0)
      F.same(before)
    end, 120)
    debug.sethook()
  end)
end)

describe("errors inside tasklets holding sockets", function()
  it("leave nothing open once the sockets are collected", function()
    F.run(function()
      local errors = {}
      local old = ts.onerror(function(_, err) errors[#errors + 1] = tostring(err) end)
      local before = F.snapshot()
      local ts_ = {}
      for i = 1, 20 do
        ts_[i] = ts.spawn(function()
          local c, a = F.pair()
          local srv = F.listen()
          local u = socket.udp()
          u:setsockname("127.0.0.1", 0)
          c:send("data in flight")
          local pending = ts.spawn(function() return a:receive(100) end)
          if i % 2 == 0 then ts.sleep(0.001) end
          pending:kill()
          error("boom " .. i .. tostring(srv) .. tostring(u))
        end)
      end
      for _, t in ipairs(ts_) do assert.is_false((t:join())) end
      assert.equal(20, #errors)
      ts.onerror(old)
      F.same(before)
    end)
  end)

  it("close a to-be-closed socket at once, before any collection", function()
    F.run(function()
      local old = ts.onerror(function() end)
      collectgarbage("stop")
      local fds = F.stablefds()
      local sockets = ts.stats().sockets
      local t = ts.spawn(function()
        local _srv <close> = F.listen()
        local _u <close> = socket.udp4()
        local _c <close> = socket.tcp4()
        ts.sleep(10)
      end)
      ts.yield()
      assert.equal(sockets + 3, ts.stats().sockets)
      t:kill()
      t:join()
      assert.equal(sockets, ts.stats().sockets)
      ts.sleep(0.005)  -- the close callbacks
      assert.equal(fds, F.waitfds(fds))  -- (the collector is stopped)
      local e = ts.spawn(function()
        local _srv <close> = F.listen()
        error("thrown")
      end)
      assert.is_false((e:join()))
      ts.sleep(0.005)
      assert.equal(fds, F.waitfds(fds))  -- (the collector is stopped)
      collectgarbage("restart")
      ts.onerror(old)
    end)
    collectgarbage("restart")
  end)

  it("regression: a UDP socket can be a to-be-closed variable", function()
    -- TCP and Unix-domain sockets could; UDP raised "non-closable value"
    F.run(function()
      local sockets = ts.stats().sockets
      do
        local u <close> = socket.udp()
        local _u4 <close> = socket.udp4()
        assert(u:setsockname("127.0.0.1", 0))
        assert.equal(sockets + 2, ts.stats().sockets)
      end
      assert.equal(sockets, ts.stats().sockets)
    end)
  end)

  it("kill a tasklet blocked inside its own coroutine, and collect that coroutine's socket", function()
    F.run(function()
      local before = F.snapshot()
      local t = ts.spawn(function()
        local c, a = F.pair()
        local gen = coroutine.wrap(function()
          while true do coroutine.yield(a:receive()) end
        end)
        c:send("one\n")
        assert.equal("one", gen())
        return gen()  -- blocks in the coroutine: killed there
      end)
      ts.sleep(0.01)
      assert.equal("blocked", t:status())
      t:kill("out")
      assert.same({ false, "out" }, { t:join() })
      F.same(before)
    end)
  end)
end)

describe("kills and deliveries", function()
  it("regression: a coroutine that fails after a caught kill reports its error to resume", function()
    -- the tasklet stayed marked as unwinding a kill, and resume re-raised
    -- every later error of its coroutines
    F.run(function()
      local t = ts.spawn(function()
        local ok, e = pcall(ts.sleep, 10)
        local co = coroutine.create(function() error("inner", 0) end)
        local r = pack(coroutine.resume(co))
        local w = pack(pcall(coroutine.wrap(function() error("wrapped", 0) end)))
        return ok, e, r[1], r[2], w[1], w[2]
      end)
      ts.sleep(0.005)
      t:kill()
      assert.same({ true, false, "killed", false, "inner", false, "wrapped" }, { t:join() })
    end)
  end)

  it("regression: a value handed to a receiver killed before it ran is not lost", function()
    -- the kill dropped the value the channel had already given it; now the
    -- receive returns it and the kill lands at the next blocking call
    F.run(function()
      local ch = ts.channel()
      local got
      local r = ts.spawn(function()
        got = ch:receive()
        ch:receive()
        return "not reached"
      end)
      ts.yield()
      assert(ch:send("precious"))
      assert.equal("ready", r:status())
      assert.is_true(r:kill())
      assert.same({ false, "killed" }, { r:join() })
      assert.equal("precious", got)
      -- a tasklet woken without values (sleep, yield, sockets) dies at once
      local after = false
      local s = ts.spawn(function() ts.yield() after = true end)
      ts.yield()
      assert.equal("ready", s:status())
      s:kill()
      assert.same({ false, "killed" }, { s:join() })
      assert.is_false(after)
    end)
  end)

  it("regression: a message an xchannel delivered to a receiver killed before it ran is not lost", function()
    F.run(function()
      local x = ts.xchannel()
      local r = ts.spawn(function() return x:receive() end)
      local killer = ts.spawn(function()
        -- the hub wakes r in one turn of the loop; kill it before it runs
        local deadline = ts.now() + F.time(2)
        while r:status() ~= "ready" and ts.now() < deadline do ts.yield() end
        return r:kill()
      end)
      ts.yield()
      local th = ts.thread.start(function(xc) return xc:send("precious", 5) end, x)
      assert.same({ true, true }, { th:join() })
      assert(killer:join())
      local ok, v = r:join()
      assert.is_true(ok == true and v == "precious" or x:count() == 1,
                     "the message is gone: " .. tostring(ok) .. ", " .. tostring(v))
      x:close()
    end)
  end)

  it("lose no message of a channel or an xchannel while receivers are killed at random", function()
    local seed = F.seed("receivers killed")
    local rnd = math.random
    F.run(function()
      local N = F.scale(2000, 10)
      for _, kind in ipairs { "channel", "xchannel" } do
        local ch = kind == "channel" and ts.channel(rnd(0, 3)) or ts.xchannel(rnd(0, 3))
        local got, receivers = {}, {}
        local function receiver()
          while true do
            local v = ch:receive()
            if v == nil then return end
            got[#got + 1] = v
            if rnd(4) == 1 then ts.yield() end
          end
        end
        local producer
        if kind == "channel" then
          producer = ts.spawn(function()
            for i = 1, N do assert(ch:send(i)) if rnd(8) == 1 then ts.yield() end end
            return true
          end)
        else
          local th = ts.thread.start(function(x, n)
            for i = 1, n do assert(x:send(i)) end
            return true
          end, ch, N)
          producer = ts.spawn(function() return select(2, th:join()) end)
        end
        for i = 1, 4 do receivers[i] = ts.spawn(receiver) end
        local kills = 0
        while producer:status() ~= "dead" do
          if rnd(3) == 1 then ts.yield() else ts.sleep(rnd() * 0.001) end
          local i = rnd(#receivers)
          receivers[i]:kill()
          kills = kills + 1
          receivers[i] = ts.spawn(receiver)
        end
        assert.same({ true, true }, { producer:join() })
        ch:close()
        for _, t in ipairs(receivers) do t:join() end
        while true do  -- what is left in the channel
          local v = ch:receive(0)
          if v == nil then break end
          got[#got + 1] = v
        end
        table.sort(got)
        assert.equal(N, #got, ("%s, seed %d: %d of %d messages, %d kills")
                                :format(kind, seed, #got, N, kills))
        for i = 1, N do assert.equal(i, got[i]) end
      end
    end, 60)
  end)
end)
