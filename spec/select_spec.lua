-- socket.select: differential cases against LuaSocket (main chunk and
-- tasklet), then what only tasksock does (one tasklet blocked, kill/close
-- while waiting, no 1024-descriptor limit).
local ts = require "tasksock"
local H = require "spec.helper.luasocket_diff"
local F = require "spec.helper.fault"
local LS = H.luasocket
local S = H.tasksock

local function same(case)
  local ls, main, task = H.both(case)
  assert.same(ls, main)
  assert.same(ls, task)
  return ls
end

-- what select returned, as comparable values: sizes, err and who is where
local function shape(note, r, w, err, names)
  note(type(r), type(w), err, #r, #w)
  for i, o in ipairs(r) do note("r", i, names[o] or "?", r[o]) end
  for i, o in ipairs(w) do note("w", i, names[o] or "?", w[o]) end
end

-- the same, with select's three results as the last arguments
local function shape3(note, names, r, w, err)
  shape(note, r, w, err, names)
end

describe("socket.select (differential)", function()
  it("gives {}, {}, 'timeout' when nothing is ready", function()
    same(function(socket, note)
      local c, a, srv = H.pair(socket)
      shape3(note, {}, socket.select({ a, srv }, nil, 0.05))
      local r, w, e = socket.select({ a, srv }, {}, 0)
      shape(note, r, w, e, {})
      c:close(); a:close(); srv:close()
    end)
  end)

  it("gives empty tables and 'timeout' for nil or empty lists", function()
    same(function(socket, note)
      shape3(note, {}, socket.select(nil, nil, 0.01))
      local r, w, e = socket.select({}, {}, 0)
      shape(note, r, w, e, {})
    end)
  end)

  it("reports a client readable once data arrives, keyed by index and socket", function()
    same(function(socket, note)
      local c, a, srv = H.pair(socket)
      assert(c:send("x\n"))
      local r, w, e = socket.select({ a }, nil, 2)
      shape(note, r, w, e, { [a] = "a" })
      note(a:receive())
      c:close(); a:close(); srv:close()
    end)
  end)

  it("reports bytes the loop has not read yet when another object is ready at once", function()
    same(function(socket, note)
      local c, a, srv = H.pair(socket)
      assert(c:send("x"))  -- in the kernel at once on loopback
      local r, w, e = socket.select({ a, a }, { a }, 1)
      shape(note, r, w, e, { [a] = "a" })
      note(a:receive(1))
      c:close(); a:close(); srv:close()
    end)
  end)

  it("reports a connected client writable", function()
    same(function(socket, note)
      local c, a, srv = H.pair(socket)
      local r, w, e = socket.select(nil, { c, a }, 1)
      note(#r, #w, e, w[c] ~= nil, w[a] ~= nil)
      c:close(); a:close(); srv:close()
    end)
  end)

  it("reports a server readable when a connection waits", function()
    same(function(socket, note)
      local srv = assert(socket.bind("127.0.0.1", 0))
      local _, port = srv:getsockname()
      shape3(note, {}, socket.select({ srv }, nil, 0))
      local c = assert(socket.connect("127.0.0.1", port))
      local r, w, e = socket.select({ srv }, { srv }, 2)
      shape(note, r, w, e, { [srv] = "srv" })
      c:close(); srv:close()
    end)
  end)

  -- LuaSocket asks poll(2): a socket whose send buffer is full is not
  -- writable, and a loop of select then send does not spin.
  it("reports a client whose send buffer is full not writable", function()
    same(function(socket, note)
      local c, a, srv = H.pair(socket)
      c:settimeout(0)
      local big = string.rep("x", 1024 * 1024)
      local full = false
      for _ = 1, 64 do
        local _, err = c:send(big)
        if err == "timeout" then full = true break end
      end
      note(full)
      local r, w, e = socket.select(nil, { c }, 0)
      shape(note, r, w, e, { [c] = "c" })
      r, w, e = socket.select(nil, { c }, 0.05)
      shape(note, r, w, e, { [c] = "c" })
      note(select(2, c:send("y")))
      c:close(); a:close(); srv:close()
    end)
  end)

  -- The connection the server saw is gone once accepted: not readable.
  it("reports a server not readable once its one waiting connection is accepted", function()
    same(function(socket, note)
      local srv = assert(socket.bind("127.0.0.1", 0))
      local _, port = srv:getsockname()
      local c = assert(socket.connect("127.0.0.1", port))
      local r = socket.select({ srv }, nil, 2)
      note(r[srv] ~= nil)
      local a = assert(srv:accept())
      local r2, w, e = socket.select({ srv }, nil, 0)
      shape(note, r2, w, e, { [srv] = "srv" })
      srv:settimeout(0)
      note(srv:accept())
      r2, w, e = socket.select({ srv }, nil, 0)
      shape(note, r2, w, e, { [srv] = "srv" })
      a:close(); c:close(); srv:close()
    end)
  end)

  it("gives peer close as readable (then receive says closed)", function()
    same(function(socket, note)
      local c, a, srv = H.pair(socket)
      c:close()
      local r, w, e = socket.select({ a }, nil, 2)
      shape(note, r, w, e, { [a] = "a" })
      note(a:receive())
      a:close(); srv:close()
    end)
  end)

  it("returns dirty objects at once, first, before ready ones", function()
    same(function(socket, note)
      local c, a, srv = H.pair(socket)
      local c2, a2, srv2 = H.pair(socket)
      assert(c:send("one\ntwo\n"))
      socket.select({ a }, nil, 2)
      socket.sleep(0.05)
      note(a:receive())
      note(a:dirty())
      assert(c2:send("x"))
      socket.sleep(0.05)
      local r, w, e = socket.select({ a2, a }, nil, 5)
      shape(note, r, w, e, { [a] = "a", [a2] = "a2" })
      note(a:receive())
      c:close(); a:close(); srv:close(); c2:close(); a2:close(); srv2:close()
    end)
  end)

  it("ignores closed objects and values without getfd", function()
    same(function(socket, note)
      local c, a, srv = H.pair(socket)
      assert(c:send("x"))
      a:close()
      local r, w, e = socket.select({ a, "str", {} }, { a, {} }, 0)
      shape(note, r, w, e, {})
      c:close(); srv:close()
    end)
  end)

  it("orders ready objects by descriptor and keeps one per descriptor", function()
    same(function(socket, note)
      local cs, as, srvs, names = {}, {}, {}, {}
      for i = 1, 3 do
        cs[i], as[i], srvs[i] = H.pair(socket)
        names[as[i]] = "a" .. i
        assert(cs[i]:send("x"))
      end
      socket.sleep(0.05)
      local r, w, e = socket.select({ as[3], as[1], as[2], as[3] }, nil, 2)
      -- which descriptor numbers the sockets got differs between the two
      -- libraries (and with what earlier specs left open): compare the
      -- order against the descriptors, not against the names
      local byfd = { as[1], as[2], as[3] }
      table.sort(byfd, function(x, y) return x:getfd() < y:getfd() end)
      for i, o in ipairs(byfd) do names[o] = "fd-rank-" .. i end
      shape(note, r, w, e, names)
      for i = 1, 3 do cs[i]:close(); as[i]:close(); srvs[i]:close() end
    end)
  end)

  it("takes any object with getfd: a LuaSocket socket behind a table", function()
    same(function(socket, note)
      local c, a, srv = H.pair(LS)  -- foreign descriptors in both runs
      local obj = { getfd = function() return a:getfd() end, dirty = function() return false end }
      shape3(note, {}, socket.select({ obj }, nil, 0.02))
      assert(c:send("x"))
      local r, w, e = socket.select({ obj }, { obj }, 2)
      shape(note, r, w, e, { [obj] = "obj" })
      c:close(); a:close(); srv:close()
    end)
  end)

  -- Under tasksock the descriptor is one of its own sockets' (in its
  -- poller): the table is polled as foreign, and what the socket read
  -- ahead beyond LuaSocket's 8 KiB buffer counts as still in the kernel.
  it("takes a table wrapping the run's own socket by its getfd", function()
    same(function(socket, note)
      local c, a, srv = H.pair(socket)
      local obj = { getfd = function() return a:getfd() end, dirty = function() return false end }
      shape3(note, {}, socket.select({ obj }, nil, 0.02))
      assert(c:send(string.rep("x", 20000)))
      shape3(note, { [obj] = "obj" }, socket.select({ obj }, nil, 2))
      note(#a:receive(1))
      shape3(note, { [obj] = "obj" }, socket.select({ obj }, nil, 2))
      note(#a:receive(19899))
      shape3(note, { [obj] = "obj" }, socket.select({ obj }, nil, 0.02))
      c:close()
      shape3(note, { [obj] = "obj" }, socket.select({ obj }, nil, 2))
      a:close(); srv:close()
    end)
  end)

  it("completes a non-blocking connect: timeout, select writable, connect again", function()
    same(function(socket, note)
      local srv = assert(socket.bind("127.0.0.1", 0))
      local _, port = srv:getsockname()
      local c = socket.tcp()
      c:settimeout(0)
      note(c:connect("127.0.0.1", port))
      local r, w, e = socket.select(nil, { c }, 2)
      shape(note, r, w, e, { [c] = "c" })
      note(c:connect("127.0.0.1", port))
      note(c:connect("127.0.0.1", port))
      c:close(); srv:close()
    end)
  end)

  it("reports a refused non-blocking connect readable and writable", function()
    same(function(socket, note)
      local port = H.closedport(socket)
      local c = socket.tcp()
      c:settimeout(0)
      note(c:connect("127.0.0.1", port))
      local r, w, e = socket.select({ c }, { c }, 2)
      shape(note, r, w, e, { [c] = "c" })
      note(c:connect("127.0.0.1", port))
      c:close()
    end)
  end)

  it("reports an unconnected socket as select(2) does", function()
    same(function(socket, note)
      local m = socket.tcp4()
      local r, w, e = socket.select({ m }, { m }, 0)
      shape(note, r, w, e, { [m] = "m" })
      m:close()
    end)
  end)

  it("reports a UDP socket readable when a datagram is queued, writable always", function()
    same(function(socket, note)
      local u = socket.udp()
      assert(u:setsockname("127.0.0.1", 0))
      local _, port = u:getsockname()
      local r, w, e = socket.select({ u }, { u }, 0.02)
      shape(note, r, w, e, { [u] = "u" })
      local v = socket.udp()
      assert(v:sendto("dgram", "127.0.0.1", port))
      r, w, e = socket.select({ u }, nil, 2)
      shape(note, r, w, e, { [u] = "u" })
      note(u:receive())
      u:close(); v:close()
    end)
  end)

  it("raises LuaSocket's errors for bad arguments", function()
    same(function(socket, note)
      local function try(...)  -- the function's name differs: socket.core / tasksock.socket
        local ok, err = pcall(socket.select, ...)
        note(ok, (tostring(err):gsub("to '[^']*'", "to '?'")))
      end
      try(1, nil, 0)
      try(nil, "x", 0)
      try({ 1 }, nil, 0)
      try(nil, nil, "soon")
    end)
  end)
end)

describe("socket.select in tasklets", function()
  it("blocks only its tasklet and wakes when a socket becomes ready", function()
    local c, a, srv = H.pair(S)
    local ticks, got = 0, nil
    ts.spawn(function()
      local r = S.select({ a }, nil, 5)
      got = r[1] == a and r[a] == 1
    end)
    ts.spawn(function()
      for _ = 1, 5 do ticks = ticks + 1; ts.yield() end
      c:send("late\n")
    end)
    ts.run()
    assert.equal(5, ticks)
    assert.is_true(got)
    c:close(); a:close(); srv:close()
  end)

  it("wakes a select for writing when the peer makes room in a full send buffer", function()
    local c, a, srv = H.pair(S)
    c:settimeout(0)
    local big = string.rep("x", 1024 * 1024)
    repeat local _, err = c:send(big) until err == "timeout"
    local got, drained
    ts.spawn(function()
      local _, w, err = S.select(nil, { c }, 5)
      got = { w[c] ~= nil, err }
    end)
    ts.spawn(function()
      a:settimeout(0)
      ts.sleep(0.05)
      drained = got == nil  -- the select still waits while the buffer is full
      repeat local s = a:receive(65536) until not s
    end)
    ts.run()
    assert.is_true(drained)
    assert.same({ true, nil }, got)
    c:close(); a:close(); srv:close()
  end)

  it("waits on a foreign descriptor (a LuaSocket socket) with one tasklet", function()
    local c, a, srv = H.pair(LS)
    local got
    ts.spawn(function()
      local r, _, e = S.select({ a }, nil, 5)
      got = { r[1] == a, e }
    end)
    ts.spawn(function() ts.sleep(0.05); c:send("x") end)
    ts.run()
    assert.same({ true, nil }, got)
    c:close(); a:close(); srv:close()
  end)

  it("waits from the main chunk, driving the loop", function()
    local c, a, srv = H.pair(S)
    ts.spawn(function() ts.sleep(0.05); c:send("x") end)
    local r, _, e = S.select({ a }, nil, 5)
    assert.equal(a, r[1])
    assert.is_nil(e)
    c:close(); a:close(); srv:close()
  end)

  it("times out after about the timeout and leaves no watcher behind", function()
    local c, a, srv = H.pair(S)
    local t0 = S.gettime()
    local r, e
    ts.spawn(function() local _; r, _, e = S.select({ a }, nil, 0.1) end)
    ts.run()
    local dt = S.gettime() - t0
    assert.equal("timeout", e)
    assert.same({}, r)
    assert.is_true(dt >= 0.09 and dt < 2, "took " .. dt)
    c:send("x\n")   -- nobody waits any more: nothing to wake
    assert.equal("x", a:receive())
    c:close(); a:close(); srv:close()
  end)

  it("is cancelled cleanly by kill, on our and foreign sockets", function()
    local c, a, srv = H.pair(S)
    local lc, la, lsrv = H.pair(LS)
    local t = ts.spawn(function() S.select({ a, la }, { srv }, 10) end)
    ts.spawn(function() ts.sleep(0.02); t:kill() end)
    ts.run()
    assert.equal("dead", t:status())
    c:send("x\n"); lc:send("y\n")
    assert.equal("x", a:receive())
    assert.equal("y", la:receive())
    c:close(); a:close(); srv:close(); lc:close(); la:close(); lsrv:close()
  end)

  it("wakes when a watched socket is closed by another tasklet", function()
    local c, a, srv = H.pair(S)
    local r
    ts.spawn(function() r = S.select({ a }, nil, 5) end)
    ts.spawn(function() ts.sleep(0.02); a:close() end)
    local t0 = S.gettime()
    ts.run()
    assert.is_true(S.gettime() - t0 < 2)
    assert.equal(a, r[1])
    c:close(); srv:close()
  end)

  it("lets several tasklets select on the same socket", function()
    local c, a, srv = H.pair(S)
    local n = 0
    for _ = 1, 3 do
      ts.spawn(function() if S.select({ a }, nil, 5)[a] then n = n + 1 end end)
    end
    ts.spawn(function() ts.sleep(0.02); c:send("x") end)
    ts.run()
    assert.equal(3, n)
    c:close(); a:close(); srv:close()
  end)

  it("has no 1024-descriptor limit", function()
    local pairs_ = {}
    for i = 1, 600 do local c, a, srv = H.pair(S); pairs_[i] = { c, a, srv } end   -- 1800 descriptors
    local last = pairs_[600]
    assert.is_true(last[2]:getfd() >= 1024)
    local list = {}
    for i = 1, 600 do list[i] = pairs_[i][2] end
    local _, _, e = S.select(list, nil, 0)
    assert.equal("timeout", e)
    ts.spawn(function() ts.sleep(0.02); last[1]:send("x") end)
    local r
    r, _, e = S.select(list, nil, 5)
    assert.is_nil(e)
    assert.equal(1, #r)
    assert.equal(last[2], r[1])
    for i = 1, 600 do for _, s in ipairs(pairs_[i]) do s:close() end end
  end)

  it("leaves no descriptor open after waits on foreign descriptors", function()
    local c, a, srv = H.pair(LS)
    collectgarbage(); collectgarbage()  -- earlier tests' garbage closes now, not during the loop
    local before = F.stablefds()  -- a pool thread may hold one for a moment
    for _ = 1, 20 do S.select({ a }, { a }, 0) end
    for _ = 1, 5 do S.select({ a }, nil, 0.01) end
    assert.equal(before, F.waitfds(before, 1))
    c:close(); a:close(); srv:close()
  end)

  it("lets a select(..., 0) polling loop make progress", function()
    local c, a, srv = H.pair(S)
    c:send("x")
    local n, r = 0
    repeat
      n = n + 1
      r = S.select({ a }, nil, 0)
    until r[1] or n > 1000
    assert.equal(a, r[1])
    c:close(); a:close(); srv:close()
  end)
end)
