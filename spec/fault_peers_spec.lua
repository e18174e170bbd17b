-- Faulty and hostile TCP peers: connections reset in the middle of a send
-- or a receive, closed half-way, fed one byte at a time, or never read
-- (slow loris on both sides). Each case checks that no tasklet waits past
-- its timeout, that the results are LuaSocket's (error words and partial
-- results), that no descriptor, socket or tasklet is left behind, and, where
-- a server is involved, that it keeps serving other clients meanwhile.
-- Peers are tasksock tasklets, and for resets also Debian's LuaSocket in a
-- process of its own.
local ts = require "tasksock"
local socket = require "tasksock.socket"
local F = require "spec.helper.fault"

local pack = table.pack

-- A line echo server: one tasklet per connection, each receive bounded by
-- a total timeout. Returns its port and a function that stops it and every
-- connection tasklet it has.
local function echoserver(timeout)
  local srv, port = F.listen()
  local conns = {}
  local acceptor = ts.spawn(function()
    while true do
      local c = srv:accept()
      if not c then return end
      conns[c] = ts.spawn(function()
        c:settimeout(timeout or 1, "t")
        while true do
          local line = c:receive()
          if not line or not c:send(line .. "\n") then break end
        end
        c:close()
        conns[c] = nil
      end)
    end
  end)
  return port, function()
    srv:close()
    acceptor:join()
    for c, t in pairs(conns) do c:close() t:join() end
  end
end

-- A client that does n round trips with the server, one every `every`
-- seconds; returns the slowest round trip (each one must succeed).
local function probe(port, n, every)
  local worst = 0
  for i = 1, n do
    local t0 = ts.now()
    local c = assert(socket.connect("127.0.0.1", port))
    c:settimeout(F.time(2))
    assert(c:send("ping " .. i .. "\n"))
    assert.equal("ping " .. i, c:receive())
    c:close()
    worst = math.max(worst, ts.now() - t0)
    ts.sleep(every or 0.01)
  end
  return worst
end

local BIG = string.rep("0123456789abcdef", 512 * 1024)  -- 8 MiB

describe("a peer that resets the connection", function()
  it("mid-receive: the receive fails with 'closed' and the bytes before the reset", function()
    F.run(function()
      local before = F.snapshot()
      for _, pat in ipairs { "*l", 100, "*a" } do
        local c, a = F.pair()
        local got
        local r = ts.spawn(function() got = pack(a:receive(pat)) end)
        assert(c:send("hello"))
        ts.sleep(0.02)
        F.reset(c)
        assert(r:join())
        assert.same({ nil, "closed", "hello", n = 3 }, got, "pattern " .. tostring(pat))
        -- and again: nothing more, and no hang
        a:settimeout(F.time(1))
        assert.same({ nil, "closed", "", n = 3 }, pack(a:receive(pat)))
        a:close()
      end
      F.same(before)
    end)
  end)

  it("regression: '*a' cut short by a reset fails with 'closed' and the partial, as LuaSocket", function()
    -- it returned the truncated data as a success, as if the peer had
    -- closed cleanly; LuaSocket says nil, "closed", partial
    F.run(function()
      local c, a = F.pair()
      assert(c:send("first part, "))
      ts.sleep(0.02)
      assert(c:send("second part"))
      ts.sleep(0.02)
      F.reset(c)
      ts.sleep(0.02)
      a:settimeout(F.time(1))
      assert.same({ nil, "closed", "first part, second part", n = 3 }, pack(a:receive("*a")))
      a:close()
      -- a clean close still makes '*a' succeed
      c, a = F.pair()
      assert(c:send("all of it"))
      c:close()
      a:settimeout(F.time(1))
      assert.same({ "all of it", nil, nil, n = 3 }, pack(a:receive("*a")))
      a:close()
    end)
  end)

  it("regression: a send to a reset peer fails with 'closed' instead of killing the process with SIGPIPE", function()
    -- in a process of its own that never loads LuaSocket (which ignores
    -- SIGPIPE when it loads, and so hid this from the other specs)
    local out, ok = F.child([[
      local socket = require "tasksock.socket"
      assert(package.loaded.socket == nil)
      local srv = assert(socket.bind("127.0.0.1", 0))
      local _, port = srv:getsockname()
      local c = assert(socket.connect("127.0.0.1", port))
      local a = assert(srv:accept())
      a:setoption("linger", { on = true, timeout = 0 })
      a:close()
      socket.sleep(0.05)
      c:settimeout(1)
      local errs = {}
      for i = 1, 3 do errs[i] = select(2, c:send(string.rep("x", 100000))) end
      print("alive: " .. table.concat(errs, " "))
    ]]).wait()
    assert.is_true(ok, out)
    assert.matches("alive: closed closed closed", out, 1, true)
  end)

  it("mid-send: a send of megabytes fails with 'closed' and a partial count", function()
    F.run(function()
      local before = F.snapshot()
      local c, a = F.pair()
      local peer = ts.spawn(function()
        a:settimeout(F.time(2))
        assert(a:receive(64 * 1024))
        F.reset(a)
      end)
      c:settimeout(F.time(5))
      local t0 = ts.now()
      local last, err, partial = c:send(BIG)
      assert.is_nil(last)
      assert.equal("closed", err)
      assert.is_true(math.type(partial) ~= nil and partial >= 0 and partial <= #BIG)
      assert.is_true(ts.now() - t0 < F.time(4), "the send outlived the reset")
      assert(peer:join())
      -- the dead socket says so at once afterwards, in both directions
      assert.same({ nil, "closed", 0.0, n = 3 }, pack(c:send("more")))
      assert.same({ nil, "closed", "", n = 3 }, pack(c:receive()))
      c:close()
      F.same(before)
    end)
  end)

  -- LuaSocket counts what send(2) took before the error. The peer read
  -- 8 MiB before its reset, so at least that much was taken, more than
  -- the kernel takes at once (about 4 MiB on loopback): the part written
  -- while the send waited counts too.
  it("mid-send: the partial count is what the kernel took, past what the peer read", function()
    F.run(function()
      local HUGE = string.rep(BIG, 4)
      local READ = 8 * 1024 * 1024
      local c, a = F.pair()
      local peer = ts.spawn(function()
        a:settimeout(F.time(5))
        local got = 0
        while got < READ do
          got = got + #assert(a:receive(math.min(65536, READ - got)))
        end
        F.reset(a)
      end)
      c:settimeout(F.time(5))
      local last, err, partial = c:send(HUGE)
      assert.is_nil(last)
      assert.equal("closed", err)
      assert.is_true(partial >= READ and partial < #HUGE, "partial count " .. partial)
      assert(peer:join())
      c:close()
    end)
  end)

  it("from LuaSocket in another process: the server sees 'closed' and keeps serving", function()
    F.run(function()
      local before = F.snapshot()
      local port, stop = echoserver(F.time(2))
      -- the child sends half a line then resets; another reads a little of
      -- a big reply then resets
      local srv, rport = F.listen()
      local child = F.child([[
        local socket = require "socket"
        local port = tonumber(arg[1])
        local c = assert(socket.connect("127.0.0.1", port))
        assert(c:send("half a li"))
        socket.sleep(0.05)
        c:setoption("linger", { on = true, timeout = 0 })
        c:close()
        local d = assert(socket.connect("127.0.0.1", port))
        d:settimeout(5)
        local got = d:receive(1000)
        d:setoption("linger", { on = true, timeout = 0 })
        d:close()
        io.write("child read ", #got, "\n")
      ]], rport)
      srv:settimeout(F.time(5))
      local a = assert(srv:accept())
      a:settimeout(F.time(2))
      local ticker = ts.spawn(probe, port, 10)
      assert.same({ nil, "closed", "half a li", n = 3 }, pack(a:receive()))
      a:close()
      local b = assert(srv:accept())
      b:settimeout(F.time(3))
      local last, err, partial = b:send(BIG)
      assert.same({ nil, "closed" }, { last, err })
      assert.is_true(partial >= 1000 and partial <= #BIG)
      b:close()
      srv:close()
      local out = child.wait()
      assert.matches("child read 1000", out, 1, true)
      local ok, worst = ticker:join()
      assert(ok, worst)
      assert.is_true(worst < F.time(1), "a round trip took " .. tostring(worst) .. " s")
      stop()
      F.same(before)
    end)
  end)
end)

describe("a peer that closes half-way", function()
  it("fails a receive cut short with 'closed' and the partial", function()
    F.run(function()
      local before = F.snapshot()
      local c, a = F.pair()
      local got
      local r = ts.spawn(function() got = pack(a:receive(10)) end)
      c:send("12345")
      ts.sleep(0.01)
      c:close()
      assert(r:join())
      assert.same({ nil, "closed", "12345", n = 3 }, got)
      c, a = F.pair()
      r = ts.spawn(function() got = pack(a:receive("*l", "pre:")) end)
      c:send("no end of line")
      c:close()
      assert(r:join())
      assert.same({ nil, "closed", "pre:no end of line", n = 3 }, got)
      a:close()
      F.same(before)
    end)
  end)

  it("still takes what we send after it shut down its sending side", function()
    F.run(function()
      local c, a = F.pair()
      c:send("request")
      c:shutdown("send")
      a:settimeout(F.time(1))
      assert.equal("request", a:receive("*a"))  -- the end of its half
      assert.same({ nil, "closed", "", n = 3 }, pack(a:receive("*a")))
      assert.equal(8, a:send("response"))
      a:close()
      c:settimeout(F.time(1))
      assert.equal("response", c:receive("*a"))
      c:close()
    end)
  end)

  it("makes a blocked send fail with 'closed' when it closes without reading", function()
    F.run(function()
      local before = F.snapshot()
      local c, a = F.pair()
      local res
      local s = ts.spawn(function()
        c:settimeout(F.time(5))
        res = pack(c:send(BIG))
      end)
      ts.sleep(0.05)
      a:close()  -- unread data: the kernel answers with a reset
      assert(s:join())
      assert.same({ nil, "closed" }, { res[1], res[2] })
      c:close()
      F.same(before)
    end)
  end)
end)

describe("a peer that sends one byte at a time", function()
  it("gives the same lines and counts as if it sent them whole", function()
    F.run(function()
      local c, a = F.pair()
      c:setoption("tcp-nodelay", true)
      local text = "first line\r\nsecond\n" .. string.rep("z", 300) .. "\nabcdefghij"
      local w = ts.spawn(function()
        for i = 1, #text do
          assert(c:send(text, i, i))
          if i % 7 == 0 then ts.sleep(0.001) else ts.yield() end
        end
        c:close()
      end)
      a:settimeout(F.time(2))
      assert.equal("first line", a:receive())
      assert.equal("second", a:receive("*l"))
      assert.equal(string.rep("z", 300), a:receive())
      assert.equal("abc", a:receive(3))
      assert.equal("defghij", a:receive("*a"))
      assert(w:join())
      a:close()
    end)
  end)

  it("cannot hold a receive past its total timeout", function()
    F.run(function()
      local before = F.snapshot()
      local c, a = F.pair()
      local stop = false
      local w = ts.spawn(function()
        while not stop do  -- forever, one byte every 10 ms, never a newline
          if not c:send("x") then break end
          ts.sleep(0.01)
        end
      end)
      -- a block timeout is restarted by every byte, as in LuaSocket: the
      -- total one bounds the call
      a:settimeout(0.15, "t")
      local t0 = ts.now()
      local line, err, partial = a:receive()
      local took = ts.now() - t0
      assert.is_nil(line)
      assert.equal("timeout", err)
      assert.is_true(#partial > 0 and partial:match("^x+$") ~= nil)
      assert.is_true(took >= 0.14 and took < F.time(1), "took " .. took)
      stop = true
      a:close()
      assert(w:join())
      c:close()
      F.same(before)
    end)
  end)
end)

describe("slow loris", function()
  it("a client that trickles a line forever is cut off; the server keeps serving", function()
    F.run(function()
      local before = F.snapshot()
      local port, stop = echoserver(0.2)
      local lorises = {}
      for i = 1, 5 do
        lorises[i] = ts.spawn(function()
          local c = assert(socket.connect("127.0.0.1", port))
          c:settimeout(F.time(2))
          local sent, err = 0, nil
          for _ = 1, 500 do  -- bounded: the server must cut it off first
            local ok
            ok, err = c:send("y")
            if not ok then break end
            sent = sent + 1
            -- has the server hung up?
            c:settimeout(0)
            local _, rerr = c:receive(1)
            c:settimeout(F.time(2))
            if rerr == "closed" then err = "closed" break end
            ts.sleep(0.01)
          end
          c:close()
          return err, sent
        end)
      end
      local worst = probe(port, 20, 0.01)
      assert.is_true(worst < F.time(1), "a round trip took " .. worst .. " s")
      for _, t in ipairs(lorises) do
        local ok, err, sent = t:join()
        assert(ok, err)
        assert.equal("closed", err)
        assert.is_true(sent < 200, "the server let a loris send " .. sent .. " bytes")
      end
      stop()
      F.same(before)
    end)
  end)

  it("a client that never sends anything is timed out; the server keeps serving", function()
    F.run(function()
      local before = F.snapshot()
      local port, stop = echoserver(0.1)
      local idle = {}
      for i = 1, 20 do idle[i] = assert(socket.connect("127.0.0.1", port)) end
      assert.is_true(probe(port, 5) < F.time(1))
      for _, c in ipairs(idle) do
        c:settimeout(F.time(2))
        assert.same({ nil, "closed", "", n = 3 }, pack(c:receive()))
        c:close()
      end
      stop()
      F.same(before)
    end)
  end)

  it("a server that never reads: a send of megabytes times out, then closes cleanly", function()
    F.run(function()
      local before = F.snapshot()
      local port, stop = echoserver()
      local srv, sport = F.listen()
      local c = assert(socket.connect("127.0.0.1", sport))
      local a = assert(srv:accept())  -- never reads
      c:settimeout(0.1)
      local t0 = ts.now()
      local last, err, partial = c:send(BIG .. BIG)
      assert.is_nil(last)
      assert.equal("timeout", err)
      -- what the kernel took, as LuaSocket counts: the rest is not sent
      assert.is_true(partial > 0 and partial < 2 * #BIG)
      assert.is_true(ts.now() - t0 < F.time(1))
      -- a second send comes right behind what the first one sent
      local n2, err2, partial2 = c:send("more")
      assert.is_true(n2 == 4 or (err2 == "timeout" and partial2 >= 0))
      assert.is_true(probe(port, 3) < F.time(1))
      c:close()
      -- the peer gets exactly what the sends said they sent
      a:settimeout(F.time(5))
      local got, e, part = a:receive("*a")
      got = got or part
      assert.is_nil(e)
      local sent2 = n2 or partial2
      assert.equal(partial + sent2, #got)
      assert.is_true(got == (BIG .. BIG):sub(1, partial) .. ("more"):sub(1, sent2))
      a:close()
      srv:close()
      stop()
      F.same(before)
    end)
  end)

  it("a sender blocked forever on a peer that never reads can be killed", function()
    F.run(function()
      local before = F.snapshot()
      local c, a = F.pair()
      local s = ts.spawn(function() return c:send(BIG) end)  -- no timeout
      ts.sleep(0.05)
      assert.equal("blocked", s:status())
      s:kill("enough")
      assert.same({ false, "enough" }, { s:join() })
      -- the socket is still usable for the next send's turn, then closes
      c:settimeout(0)
      assert.same({ nil, "timeout", 0.0, n = 3 }, pack(c:send("x")))
      c:close()
      a:close()
      F.same(before)
    end)
  end)
end)
