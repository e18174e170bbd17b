-- TCP with tasklets: blocking calls block only their tasklet; closing wakes
-- the blocked; kills cancel cleanly; backpressure; no fd or handle leaks.
local ts = require "tasksock"
local socket = require "tasksock.socket"
local F = require "spec.helper.fault"

-- Run body in a tasklet with a watchdog; fail if it does not end in time.
local function run(body, limit)
  local dog = ts.spawn(function()
    ts.sleep(limit or 10)
    error("watchdog: test took too long")
  end)
  local t = ts.spawn(body)
  ts.spawn(function() t:join() dog:kill("done") end)
  ts.run()
  local ok, err = t:join()
  assert(ok, err)
end

local function server()
  local srv = assert(socket.bind("127.0.0.1", 0, 512))
  local _, port = srv:getsockname()
  return srv, port
end

describe("receive in tasklets", function()
  -- Small reads go through the scheduler's shared buffer into a copy made
  -- to measure; big ones straight into the socket's own buffer. Any mix,
  -- split anywhere, must come out byte for byte.
  it("delivers any mix of tiny and huge messages, split anywhere, byte for byte", function()
    run(function()
      local srv, port = server()
      local rnd = 12345
      local function rand(n)  -- deterministic: a failure repeats
        rnd = (rnd * 1103515245 + 12345) % 2147483648
        return rnd % n
      end
      local sizes = {}
      for i = 1, 300 do
        sizes[i] = rand(4) == 0 and 4000 + rand(120000) or 1 + rand(200)
      end
      local function body(i, n)
        local unit = string.char(65 + i % 26, 97 + i % 26)
        return unit:rep(n // 2 + 1):sub(1, n)
      end
      local sender = ts.spawn(function()
        local c = assert(socket.connect("127.0.0.1", port))
        for i, n in ipairs(sizes) do
          local msg = body(i, n) .. "\n" .. body(i + 1, n)
          local at = 1
          while at <= #msg do  -- pieces of random size, the loop turning between
            local k = 1 + rand(#msg < 64 and 64 or #msg // 3)
            assert(c:send(msg, at, math.min(#msg, at + k - 1)))
            at = at + k
            if rand(3) == 0 then ts.sleep(0) end
          end
        end
        c:close()
      end)
      local c = assert(srv:accept())
      for i, n in ipairs(sizes) do
        assert.equal(body(i, n), (assert(c:receive("*l"))))
        local rest = assert(c:receive(n))
        assert.equal(body(i + 1, n), rest)
      end
      assert.same({nil, "closed", ""}, {c:receive(1)})
      c:close()
      sender:join()
      srv:close()
    end, 30)
  end)

  it("lets hundreds of clients wait on a slow peer at once", function()
    local N, DELAY = 200, 0.2
    run(function()
      local srv, port = server()
      ts.spawn(function()
        for _ = 1, N do
          local c = assert(srv:accept())
          ts.spawn(function()
            local line = c:receive()
            ts.sleep(DELAY)
            c:send(line:upper() .. "\n")
            c:close()
          end)
        end
      end)
      local done, t0 = 0, ts.now()
      local clients = {}
      for i = 1, N do
        clients[i] = ts.spawn(function()
          local c = assert(socket.connect("127.0.0.1", port))
          assert(c:send("hello " .. i .. "\n"))
          assert.equal("HELLO " .. i, c:receive())
          c:close()
          done = done + 1
        end)
      end
      for _, t in ipairs(clients) do assert(t:join()) end
      local took = ts.now() - t0
      assert.equal(N, done)
      assert.is_true(took < 5 * DELAY + 1, "took " .. took .. " s")
      srv:close()
    end)
  end)

  it("is woken with closed when another tasklet closes the socket", function()
    run(function()
      local srv, port = server()
      local c = assert(socket.connect("127.0.0.1", port))
      local a = assert(srv:accept())
      local got = {}
      local r = ts.spawn(function() got.r = table.pack(a:receive()) end)
      local x = ts.spawn(function() got.x = table.pack(srv:accept()) end)
      ts.sleep(0.02)
      a:close()
      srv:close()
      r:join() x:join()
      assert.same({nil, "closed", "", n = 3}, got.r)
      assert.same({nil, "closed", n = 2}, got.x)
      c:close()
    end)
  end)

  it("cancels cleanly when a blocked tasklet is killed", function()
    run(function()
      collectgarbage()
      collectgarbage()
      local before = ts.stats().sockets
      local srv, port = server()
      local c = assert(socket.connect("127.0.0.1", port))
      local a = assert(srv:accept())
      local r = ts.spawn(function() return a:receive() end)
      local x = ts.spawn(function() return srv:accept() end)
      ts.sleep(0.02)
      r:kill("stop") x:kill("stop")
      r:join() x:join()
      -- the socket still works for the next reader
      c:send("after\n")
      a:settimeout(1)
      assert.equal("after", a:receive())
      c:close() a:close() srv:close()
      collectgarbage()
      assert.equal(before, ts.stats().sockets)
    end)
  end)

  -- The socket polls its descriptor level-triggered: once the read side
  -- ended, a poll left on would fire at every turn of the loop.
  it("costs no CPU once the peer's end was received and the socket stays open", function()
    local srv, port = server()
    run(function()
      local c = assert(socket.connect("127.0.0.1", port))
      local s = assert(srv:accept())
      assert(c:send("x"))
      c:close()
      assert.equal("x", s:receive(1))
      assert.same({nil, "closed", ""}, {s:receive()})
      local t0 = os.clock()
      ts.sleep(0.5)
      local cpu = os.clock() - t0
      assert.same({nil, "closed", ""}, {s:receive()})
      s:close()
      srv:close()
      assert.is_true(cpu < 0.2, "CPU seconds while it slept: " .. cpu)
    end)
  end)

  -- Nor while bytes wait that nobody receives: they stay in the kernel,
  -- and the poll stops at the first event no receive waits for.
  it("costs no CPU while bytes nobody receives wait, and the next receive gets them", function()
    local srv, port = server()
    run(function()
      local c = assert(socket.connect("127.0.0.1", port))
      local s = assert(srv:accept())
      s:settimeout(1)
      assert(c:send("x"))
      assert.equal("x", s:receive(1))
      assert(c:send("later\n"))
      local t0 = os.clock()
      ts.sleep(0.5)
      local cpu = os.clock() - t0
      assert.equal("later", s:receive())
      c:close() s:close() srv:close()
      assert.is_true(cpu < 0.2, "CPU seconds while it slept: " .. cpu)
    end)
  end)

  it("receiveany returns what is there as soon as anything is", function()
    run(function()
      local srv, port = server()
      local c = assert(socket.connect("127.0.0.1", port))
      local a = assert(srv:accept())
      ts.spawn(function() ts.sleep(0.02) c:send("abc") end)
      assert.same({"abc", nil, nil, n = 3}, table.pack(a:receiveany(10)))
      c:send("0123456789")
      ts.sleep(0.02)
      assert.equal("0123", a:receiveany(4))
      assert.equal("456789", a:receiveany(100))
      a:settimeout(0)
      assert.same({nil, "timeout", "", n = 3}, table.pack(a:receiveany(4)))
      c:close()
      a:settimeout(1)
      assert.same({nil, "closed", "", n = 3}, table.pack(a:receiveany(4)))
      assert.has_error(function() a:receiveany(0) end)
      a:close() srv:close()
    end)
  end)

  it("bounds the length of a line", function()
    run(function()
      local srv, port = server()
      local c = assert(socket.connect("127.0.0.1", port))
      local a = assert(srv:accept())
      assert(a:setoption("max-line", 100))
      assert.equal(100, a:getoption("max-line"))
      c:send(string.rep("x", 50) .. "\n" .. string.rep("y", 300) .. "\n")
      assert.equal(string.rep("x", 50), a:receive())
      local ok, err, partial = a:receive()
      assert.is_nil(ok)
      assert.equal("line too long", err)
      assert.is_true(#partial > 100)
      c:close() a:close() srv:close()
    end)
  end)
end)

-- A receive its socket has nothing buffered for gets its result made in
-- the read callback, from the bytes just read, when they settle it; what
-- is left over is kept for the next receive.
describe("receive settled by the read itself", function()
  local function pair()
    local srv, port = server()
    local cli = assert(socket.connect("127.0.0.1", port))
    local con = assert(srv:accept())
    srv:close()
    return cli, con
  end

  it("adds the prefix, drops CRs, keeps what follows for the next receives", function()
    run(function()
      local cli, con = pair()
      local got = {}
      local t = ts.spawn(function()
        got[1] = {con:receive(9, "pre:")}  -- the prefix counts, as in LuaSocket
        got[2] = {con:receive("*l")}
        got[3] = {con:receive("*l")}
        got[4] = {con:receive("*l")}
        got[5] = {con:receiveany(100)}
      end)
      ts.yield()  -- it waits in receive(5) with nothing buffered
      assert.equal("socket", t.waiting)
      assert(cli:send("abcdeline one\r\nline two\nrest"))
      ts.sleep(0.05)
      assert.equal("socket", t.waiting)  -- the third line is not complete
      assert(cli:send(" of it\nmore"))
      assert.same({true}, {t:join(5)})
      assert.same({"pre:abcde"}, got[1])
      assert.same({"line one"}, got[2])
      assert.same({"line two"}, got[3])
      assert.same({"rest of it"}, got[4])
      assert.same({"more"}, got[5])
      assert.same({5 + 10 + 9 + 11 + 4}, {(con:getstats())})
      cli:close(); con:close()
    end)
  end)

  it("serves queued readers in their order, one read settling several", function()
    run(function()
      local cli, con = pair()
      local order = {}
      for i = 1, 3 do
        ts.spawn(function()
          local v = assert(con:receive(2))
          order[#order + 1] = i .. "=" .. v
        end)
      end
      ts.yield()
      assert(cli:send("aabbcc"))
      while #order < 3 do ts.sleep(0.01) end
      assert.same({"1=aa", "2=bb", "3=cc"}, order)
      cli:close(); con:close()
    end)
  end)

  it("hands the data to a tasklet killed after it arrived; the kill waits for its next wait", function()
    run(function()
      local cli, con = pair()
      local got
      local t = ts.spawn(function()
        got = con:receive(4)
        ts.sleep(10)
      end)
      ts.yield()
      assert(cli:send("data"))
      while t:status() ~= "ready" do ts.yield() end  -- woken with its result
      t:kill("stop")
      assert.same({false, "stop"}, {t:join(5)})
      assert.equal("data", got)
      cli:close(); con:close()
    end)
  end)

  it("gives receiveany no prefix from extra arguments, and caps a huge max", function()
    run(function()
      local cli, con = pair()
      local got = {}
      local t = ts.spawn(function()
        got[1] = table.pack(con:receiveany(10, "junk"))
        got[2] = table.pack(con:receiveany(2^40))
        got[3] = table.pack(con:send("back", nil, nil, "extra"))
      end)
      ts.yield()
      assert(cli:send("abc"))
      while not got[1] do ts.sleep(0.005) end
      assert(cli:send("defg"))
      assert.same({true}, {t:join(5)})
      assert.same({"abc", nil, nil, n = 3}, got[1])
      assert.same({"defg", nil, nil, n = 3}, got[2])
      assert.same({4, nil, nil, n = 3}, got[3])
      assert.equal("back", cli:receive(4))
      cli:close(); con:close()
    end)
  end)

  it("hands the result to a receive waiting inside a coroutine of the tasklet", function()
    run(function()
      local cli, con = pair()
      local got
      local t = ts.spawn(function()
        local co = coroutine.wrap(function(n) return con:receive(n, "<") end)
        got = {co(6)}
      end)
      ts.yield()
      assert.equal("socket", t.waiting)
      assert(cli:send("hello"))
      assert.same({true}, {t:join(5)})
      assert.same({"<hello", nil, nil}, got)
      cli:close(); con:close()
    end)
  end)

  it("settles a receive of the main chunk", function()
    local srv, port = server()
    local cli = assert(socket.connect("127.0.0.1", port))
    local con = assert(srv:accept())
    ts.spawn(function() ts.sleep(0.02); cli:send("hello\nworld") end)
    assert.equal("hello", con:receive())
    con:settimeout(0)
    assert.same({nil, "timeout", "world"}, {con:receive()})
    cli:close(); con:close(); srv:close()
  end)
end)

describe("send in tasklets", function()
  it("moves 64 MiB through a slow reader intact, paced by the kernel", function()
    local BLOCK = {}
    for i = 1, 4096 do BLOCK[i] = string.char((i * 7 + i // 256) % 256) end
    BLOCK = table.concat(BLOCK):rep(256)  -- 1 MiB, not periodic in 4 KiB
    local TOTAL = 64 * #BLOCK
    run(function()
      local srv, port = server()
      local c = assert(socket.connect("127.0.0.1", port))
      local a = assert(srv:accept())
      local sender = ts.spawn(function()
        for i = 1, 64 do
          -- each block starts at a different offset: order is checked
          local piece = BLOCK:sub(i) .. BLOCK:sub(1, i - 1)
          local last, err = c:send(piece)
          assert(last == #piece, err)
        end
        c:shutdown("send")
      end)
      local got, blockno, off, slow = 0, 1, 0, 0
      while true do
        local data, err, partial = a:receive(200000)
        data = data or partial
        -- verify against the expected stream
        local pos = 1
        while pos <= #data do
          local expect = BLOCK:sub(blockno) .. BLOCK:sub(1, blockno - 1)
          local n = math.min(#data - pos + 1, #BLOCK - off)
          assert(data:sub(pos, pos + n - 1) == expect:sub(off + 1, off + n),
                 "corrupt at byte " .. got + pos)
          pos, off = pos + n, off + n
          if off == #BLOCK then blockno, off = blockno + 1, 0 end
        end
        got = got + #data
        if err then assert.equal("closed", err) break end
        slow = slow + 1
        if slow % 16 == 0 then ts.sleep(0.001) end  -- a slow reader
      end
      assert(sender:join())
      assert.equal(TOTAL, got)
      c:close() a:close() srv:close()
    end, 60)
  end)

  it("holds a string only its write in flight holds, until the write is done", function()
    local BLOCK = {}
    for i = 1, 4096 do BLOCK[i] = string.char((i * 13 + i // 256) % 256) end
    BLOCK = table.concat(BLOCK):rep(256)  -- 1 MiB
    local function piece(i) return BLOCK:sub(i) .. BLOCK:sub(1, i - 1) end  -- new each call
    local N = 24
    run(function()
      collectgarbage()
      local before = collectgarbage("count")
      local srv, port = server()
      local c = assert(socket.connect("127.0.0.1", port))
      local a = assert(srv:accept())
      -- small kernel buffers (no autotuning): a piece does not fit in them
      assert(c:setoption("send-buffer-size", 8192))
      assert(a:setoption("recv-buffer-size", 16384))
      c:settimeout(0.001)
      local timeouts = 0
      local sender = ts.spawn(function()
        for i = 1, N do
          local from = 1
          while from <= #BLOCK do
            -- once this call is over, only the write in flight holds the string
            local n, err, last = c:send(piece(i), from)
            collectgarbage()
            collectgarbage()
            if n then from = n + 1
            else
              assert.equal("timeout", err)
              timeouts = timeouts + 1
              from = last + 1
            end
          end
        end
      end)
      for i = 1, N do
        ts.sleep(0.003)  -- a slow reader: the writes stay in flight
        local data, err = a:receive(#BLOCK)
        assert(data == piece(i), err or "piece " .. i .. " corrupt")
      end
      assert(sender:join())
      assert.is_true(timeouts >= N // 2)
      c:close() a:close() srv:close()
      collectgarbage()
      collectgarbage()
      -- each piece written is let go (kept, they would be N MiB)
      assert.is_true(collectgarbage("count") - before < 4096)
    end, 60)
  end)

  it("times out a send the peer does not read, without losing order", function()
    run(function()
      local srv, port = server()
      local c = assert(socket.connect("127.0.0.1", port))
      local a = assert(srv:accept())
      c:settimeout(0.05)
      local big = string.rep("z", 32 * 1024 * 1024)
      local last, err, partial = c:send(big)
      assert.is_nil(last)
      assert.equal("timeout", err)
      assert.is_true(partial > 0 and partial <= #big)
      c:close() a:close() srv:close()
    end)
  end)
end)

describe("the main chunk", function()
  it("drives the loop for a blocking call outside any tasklet", function()
    local srv, port = server()
    local replies = {}
    ts.spawn(function()
      local c = assert(srv:accept())
      replies[#replies + 1] = c:receive()
      c:send("pong\n")
      c:close()
    end)
    local c = assert(socket.connect("127.0.0.1", port))
    c:send("ping\n")
    assert.equal("pong", c:receive())
    assert.same({"ping"}, replies)
    c:close() srv:close()
  end)
end)

describe("collection", function()
  it("releases the fds of thousands of connections dropped without close", function()
    collectgarbage()  -- what earlier specs dropped must not close in the count
    collectgarbage()
    local before = F.stablefds()  -- a pool thread may hold one for a moment
    local base = ts.stats().sockets
    local srv, port = server()
    for _ = 1, 10 do
      local keep = {}  -- luacheck: ignore 241
      for i = 1, 200 do
        local c = assert(socket.connect("127.0.0.1", port))
        keep[i] = {c, srv:accept()}
        c:send("x")  -- something in flight and read ahead
      end
      keep = nil  -- luacheck: ignore 311
      collectgarbage()
      collectgarbage()
    end
    srv:close()
    collectgarbage()
    collectgarbage()
    assert.equal(before, F.waitfds(before, 1))  -- after the close callbacks
    assert.equal(base, ts.stats().sockets)
  end)
end)

describe("a descriptor closed behind tasksock's back", function()
  -- Another object (here a LuaSocket one given the number) closes a
  -- socket's descriptor while the socket is polled; a new socket gets the
  -- same number and waits on it. The old object letting go of its number
  -- (setfd(-1); a close would close the new socket's descriptor, under
  -- LuaSocket too) must not take the new socket's registration in the
  -- scheduler's epoll set with it.
  it("does not take the next owner's poll with it when its object lets go", function()
    local LS = require "socket"
    run(function()
      local srv, port = server()
      local c1 = assert(socket.connect("127.0.0.1", port))
      local a1 = assert(srv:accept())
      a1:settimeout(0.02)
      assert.same({ nil, "timeout", "" }, { a1:receive(1) })  -- a1 is polled now
      local n = a1:getfd()
      local foreign = LS.tcp()
      foreign:setfd(n)
      foreign:close()  -- closes n under a1
      local held, c2 = {}, nil
      for _ = 1, 64 do  -- the next socket with descriptor n
        local m, err = socket.tcp4()
        if not m then
          -- built with a uv_poll_t per socket (-DTSK_POLLER_UV): libuv
          -- refuses a second poll on a number it still polls
          assert.equal("File exists", err)
          for _, h in ipairs(held) do h:close() end
          a1:setfd(-1); c1:close(); srv:close()
          return
        end
        if m:getfd() == n then c2 = m break end
        held[#held + 1] = m
      end
      assert(c2, "no socket got descriptor " .. n)
      assert(c2:connect("127.0.0.1", port))
      local a2 = assert(srv:accept())
      local got = {}
      local r = ts.spawn(function()
        c2:settimeout(2)
        got = { c2:receive(1) }
      end)
      ts.sleep(0.05)  -- c2 waits, polled under descriptor n
      a1:setfd(-1)
      assert(a2:send("x"))
      r:join()
      assert.same({ "x" }, got)
      for _, m in ipairs(held) do m:close() end
      c1:close(); c2:close(); a1:close(); a2:close(); srv:close()
    end)
  end)
end)
