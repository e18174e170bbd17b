-- UDP with tasklets: a receive blocks only its tasklet; readers are served
-- in order; close, kill, timeouts and collection leave nothing behind.
local ts = require "tasksock"
local C = require("tasksock.core")._socket

local function bound()
  local r = assert(C.udp4())
  assert(r:setsockname("127.0.0.1", 0))
  local _, port = r:getsockname()
  return r, tonumber(port)
end

local function nfds()
  local n = 0
  for _ in io.popen("ls /proc/self/fd 2>/dev/null"):lines() do n = n + 1 end
  return n
end

describe("udp:receive in a tasklet", function()
  it("blocks only that tasklet while another one keeps running", function()
    local r, port = bound()
    local ticks, got = 0, nil
    ts.spawn(function() got = r:receive() end)
    ts.spawn(function()
      for _ = 1, 5 do ticks = ticks + 1; ts.yield() end
      C.udp4():sendto("late", "127.0.0.1", port)
    end)
    ts.run()
    assert.equal(5, ticks)
    assert.equal("late", got)
    r:close()
  end)

  it("serves several readers of one socket in FIFO order, one datagram each", function()
    local r, port = bound()
    local got = {}
    for i = 1, 4 do
      ts.spawn(function()
        local d = r:receive(2)
        got[#got + 1] = i .. "=" .. d
      end)
    end
    ts.spawn(function()
      local s = C.udp4()
      for i = 1, 4 do s:sendto("d" .. i .. "xxx", "127.0.0.1", port) end
    end)
    ts.run()
    assert.same({"1=d1", "2=d2", "3=d3", "4=d4"}, got)
    r:close()
  end)

  it("times out per wait ('b') and per call ('t') without blocking others", function()
    local r = bound()
    local res = {}
    ts.spawn(function() r:settimeout(0.03); res.b = {r:receive()} end)
    local r2 = bound()
    ts.spawn(function() r2:settimeout(0.03, "t"); res.t = {r2:receivefrom()} end)
    local t0 = ts.now()
    ts.run()
    assert.same({nil, "timeout"}, res.b)
    assert.same({nil, "timeout"}, res.t)
    assert.is_true(ts.now() - t0 >= 0.02)
    r:close(); r2:close()
  end)

  it("gets nil, 'closed' when another tasklet closes the socket", function()
    local r = bound()
    local res = {}
    for i = 1, 3 do ts.spawn(function() res[i] = {r:receive()} end) end
    ts.spawn(function() assert.equal(1, r:close()) end)
    ts.run()
    for i = 1, 3 do assert.same({nil, "closed"}, res[i]) end
  end)

  it("can be killed; the socket still works for the next reader", function()
    local r, port = bound()
    local t = ts.spawn(function() return r:receive() end)
    ts.spawn(function() t:kill("stop") end)
    ts.run()
    assert.same({false, "stop"}, {t:join()})
    local got
    ts.spawn(function() r:settimeout(1); got = r:receive() end)
    ts.spawn(function() C.udp4():sendto("after", "127.0.0.1", port) end)
    ts.run()
    assert.equal("after", got)
    r:close()
  end)

  it("drives the loop when called from the main chunk", function()
    local r, port = bound()
    ts.spawn(function() ts.sleep(0.01); C.udp4():sendto("main", "127.0.0.1", port) end)
    r:settimeout(2)
    assert.equal("main", r:receive())
    r:close()
  end)

  it("returns datagrams already queued without waiting", function()
    local r, port = bound()
    local s = C.udp4()
    s:sendto("q1", "127.0.0.1", port)
    s:sendto("q2", "127.0.0.1", port)
    r:settimeout(0)
    assert.equal("q1", r:receive())
    assert.equal("q2", (r:receivefrom()))
    r:close(); s:close()
  end)

  it("gets 'connection refused' on a connected socket to a closed port", function()
    local dead, port = bound()
    dead:close()
    local c = C.udp4()
    assert(c:setpeername("127.0.0.1", port))
    local res
    ts.spawn(function()
      c:settimeout(1)
      assert(c:send("x"))
      res = {c:receive()}
    end)
    ts.run()
    assert.same({nil, "connection refused"}, res)
    c:close()
  end)

  it("raises where the tasklet cannot block, before waiting", function()
    local r = bound()
    local t = ts.spawn(function()
      table.sort({2, 1}, function(a, b) r:receive(); return a < b end)
    end)
    local old = ts.onerror(function() end)
    ts.run()
    ts.onerror(old)
    local ok, err = t:join()
    assert.is_false(ok)
    assert.matches("attempt to block across a C%-call boundary", err)
    r:close()
  end)
end)

describe("udp sockets", function()
  it("are counted while open and release their descriptors when collected", function()
    collectgarbage(); collectgarbage()
    local before, open0 = nfds(), ts.stats().sockets
    for _ = 1, 200 do
      local u = C.udp4()
      u:setsockname("127.0.0.1", 0)
    end
    local s = C.udp()
    s:sendto("x", "127.0.0.1", 9)
    assert.is_true(ts.stats().sockets >= open0 + 1)
    s = nil  -- luacheck: ignore 311
    collectgarbage(); collectgarbage()
    ts.sleep(0.01)  -- let the close callbacks run
    assert.equal(open0, ts.stats().sockets)
    assert.is_true(nfds() <= before + 1)
  end)

  it("release a socket collected while a killed tasklet waited on it", function()
    local before = ts.stats().sockets
    local t = ts.spawn(function()
      local r = bound()
      r:receive()
    end)
    ts.spawn(function() t:kill() end)
    ts.run()
    collectgarbage(); collectgarbage()
    ts.sleep(0.01)
    assert.equal(before, ts.stats().sockets)
  end)
end)
