-- What a hostile peer can make the process hold, limit by limit (each is
-- documented in docs/reliability.md): the "*l" line bound (option
-- "max-line", off by default as in LuaSocket), reading only while a receive
-- waits (and then to the 64 KiB high-water mark or what it needs),
-- connections nobody accepted (the kernel's backlog), UDP (the kernel's
-- queue; a receive buffer is at most one datagram), and channel and
-- xchannel capacities. Bytes read from the kernel are counted by
-- ts.stats().bytesin, which is how these specs see what was taken in.
local ts = require "tasksock"
local socket = require "tasksock.socket"
local F = require "spec.helper.fault"

local KiB, MiB = 1024, 1024 * 1024
local pack = table.pack

-- A peer that sends n bytes of s's pattern (no newline) in 64 KiB pieces,
-- until it is done, times out (nobody reads) or the connection ends.
local function flood(sock, n, timeout)
  return ts.spawn(function()
    local piece = string.rep("y", 64 * KiB)
    sock:settimeout(timeout or F.time(1), "t")
    local sent = 0
    while sent < n do
      local last, err, part = sock:send(piece)
      sent = sent + (last or part or 0)
      if err then return sent, err end
    end
    return sent
  end)
end

local function bytesin() return ts.stats().bytesin end

describe("the line bound (max-line)", function()
  it("is off by default (the buffer's 2 GiB cap), as LuaSocket has no bound", function()
    local c, a = F.pair()
    assert.equal(2 ^ 31 - 2, a:getoption("max-line"))
    assert.equal(2 ^ 31 - 2, c:getoption("max-line"))
    c:close() a:close()
  end)

  it("lets an 8 MB line through whole by default, as LuaSocket's test client sends", function()
    F.run(function()
      local c, a = F.pair()
      local line = string.rep("aZb.c#dAe?", 800000)
      local peer = ts.spawn(function() return c:send(line .. "\n") end)
      a:settimeout(F.time(5))
      local got, err = a:receive()
      assert.is_nil(err)
      assert.equal(#line, #got)
      assert.is_true(got == line)
      assert.same({ true, #line + 1 }, { peer:join() })
      c:close() a:close()
    end)
  end)

  it("stops a peer that sends a line without end after the bound, not at its end", function()
    F.run(function()
      local c, a = F.pair()
      assert.equal(1, a:setoption("max-line", MiB))
      local in0 = bytesin()
      local peer = flood(c, 16 * MiB, F.SLOW and 2 or 0.5)  -- no newline
      a:settimeout(F.time(2))
      local line, err, partial = a:receive()
      local taken = bytesin() - in0
      assert.is_nil(line)
      assert.equal("line too long", err)
      assert.equal(MiB + 1, #partial)  -- the bound + 1, however it came
      -- what was read in: the bound, and what the read that crossed it
      -- brought (the buffer doubles: up to as much again)
      assert.is_true(taken <= 2 * MiB + 128 * KiB, taken .. " bytes read in")
      local ok, sent, perr = peer:join()
      assert.is_true(ok)
      assert.equal("timeout", perr)  -- the rest waited in the kernel
      assert.is_true(sent < 16 * MiB)
      c:close() a:close()
    end)
  end)

  it("can be set lower per socket, and a line within it still arrives whole", function()
    F.run(function()
      local c, a = F.pair()
      assert.equal(1, a:setoption("max-line", 64))
      c:send(string.rep("a", 64) .. "\n" .. string.rep("b", 65) .. "\n")
      a:settimeout(F.time(1))
      assert.equal(string.rep("a", 64), a:receive())
      local line, err = a:receive()
      assert.same({ nil, "line too long" }, { line, err })
      c:close() a:close()
    end)
  end)

  it("takes only whole positive integers below 2 GiB", function()
    local c, a = F.pair()
    for _, v in ipairs { 0, -1, 2 ^ 31, 0 / 0, 1.5, "x" } do
      assert.has_error(function() a:setoption("max-line", v) end)
    end
    assert.equal(2 ^ 31 - 2, a:getoption("max-line"))
    c:close() a:close()
  end)
end)

describe("reading while a receive waits", function()
  it("reads nothing from a peer that floods a socket nobody receives from", function()
    F.run(function()
      local c, a = F.pair()
      a:settimeout(F.time(1))
      c:send("x")
      assert.equal("x", a:receive(1))  -- it has read: the poll goes on a while
      local in0 = bytesin()
      local peer = flood(c, 64 * MiB, F.SLOW and 1 or 0.3)
      local ok, sent, err = peer:join()
      assert.is_true(ok)
      assert.equal("timeout", err)
      assert.equal(0, bytesin() - in0)  -- all of it is in the kernel's buffers
      assert.is_true(sent > 0)
      assert.equal(64 * KiB, #a:receive(64 * KiB))
      c:close() a:close()
    end)
  end)

  it("reads beyond it only as far as a waiting receive asks", function()
    F.run(function()
      local c, a = F.pair()
      local in0 = bytesin()
      local peer = flood(c, 64 * MiB, F.SLOW and 1 or 0.3)
      a:settimeout(F.time(2))
      assert.equal(MiB, #a:receive(MiB))
      assert(peer:join())
      local taken = bytesin() - in0
      assert.is_true(taken <= MiB + 128 * KiB, taken .. " bytes read in")
      c:close() a:close()
    end)
  end)
end)

describe("connections nobody accepts", function()
  it("cost nothing in the process: the kernel's backlog holds them", function()
    F.run(function()
      local srv, port = F.listen(8)
      local sockets = ts.stats().sockets
      -- raw connects from LuaSocket, so that only the server is ours
      local LS = require "socket"
      local peers = {}
      for i = 1, 64 do
        local p = LS.tcp()
        p:settimeout(0)
        p:connect("127.0.0.1", port)  -- in progress or done: either way queued
        peers[i] = p
      end
      collectgarbage()
      local kb = collectgarbage("count")
      ts.sleep(0.05)  -- the server hears of them
      collectgarbage()
      assert.equal(sockets, ts.stats().sockets)
      assert.is_true(collectgarbage("count") - kb < 64)
      for _, p in ipairs(peers) do p:close() end
      srv:close()
    end)
  end)
end)

describe("UDP", function()
  it("reads nothing ahead: a flood of datagrams stays in the kernel's queue", function()
    F.run(function()
      local u = socket.udp()
      assert(u:setsockname("127.0.0.1", 0))
      local _, port = u:getsockname()
      local in0 = bytesin()
      local kb = collectgarbage("count")
      local v = socket.udp()
      local dgram = string.rep("d", 1000)
      for _ = 1, 2000 do v:sendto(dgram, "127.0.0.1", port) end
      ts.sleep(0.02)
      assert.equal(in0, bytesin())
      assert.is_true(collectgarbage("count") - kb < 256)
      u:settimeout(F.time(1))
      assert.equal(dgram, u:receive())  -- the first ones are there
      u:close() v:close()
    end)
  end)

  it("never allocates more than one datagram's size for a receive", function()
    F.run(function()
      local u = socket.udp()
      assert(u:setsockname("127.0.0.1", 0))
      local _, port = u:getsockname()
      local v = socket.udp()
      assert(v:sendto("small", "127.0.0.1", port))
      collectgarbage()
      local kb = collectgarbage("count")
      u:settimeout(F.time(1))
      assert.equal("small", u:receive(2 ^ 40))
      assert.is_true(collectgarbage("count") - kb < 100, "a receive(2^40) took memory")
      u:close() v:close()
    end)
  end)
end)

describe("channel and xchannel capacities", function()
  it("bound what a producer can queue: the sender waits or times out beyond them", function()
    F.run(function()
      for _, cap in ipairs { 0, 8 } do
        local ch = ts.channel(cap)
        local n = 0
        while ch:send(string.rep("m", 1000), 0) do n = n + 1 end
        assert.equal(cap, n)
        assert.equal(cap, ch:count())
        assert.same({ nil, "timeout" }, { ch:send("more", 0.01) })
      end
    end)
  end)

  it("bound what another thread can queue in an xchannel", function()
    F.run(function()
      for _, cap in ipairs { 0, 8 } do
        local x = ts.xchannel(cap)
        local th = ts.thread.start(function(xc)
          local n = 0
          while xc:send(string.rep("m", 1000), 0) do n = n + 1 end
          return n, select(2, xc:send("more", 0.01))
        end, x)
        assert.same({ true, cap, "timeout" }, { th:join() })
        assert.equal(cap, x:count())
        x:close()
      end
    end)
  end)
end)

describe("sending to a peer that never reads", function()
  it("holds the caller's string, not a copy", function()
    F.run(function()
      local c, a = F.pair()
      local big = string.rep("s", 16 * MiB)
      collectgarbage()
      local kb = collectgarbage("count")
      c:settimeout(0.1)
      local last, err = c:send(big)
      assert.same({ nil, "timeout" }, { last, err })
      assert.is_true(collectgarbage("count") - kb < 256)
      c:close() a:close()
      local _ = pack(big)
    end)
  end)
end)
