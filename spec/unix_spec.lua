-- socket.unix: differential cases against Debian's LuaSocket socket.unix,
-- and the tasklet behaviour shared with TCP (stream code in tcp.c).
local ts = require "tasksock"
local LSU = require "socket.unix"
local TSU = require "tasksock.unix"
local LS = require "socket"
local TS = require "tasksock.socket"

local function norm(v)
  local t = type(v)
  if t == "number" then return math.type(v) .. ":" .. tostring(v) end
  if t == "userdata" then return "userdata:" .. (tostring(v):match("^([^:]*):") or "?") end
  if t == "table" or t == "function" then return t end
  return t .. ":" .. tostring(v)
end

local function run(unix, socket, case)
  local list = {}
  local function note(...)
    local r = { n = select("#", ...) }
    for i = 1, r.n do r[i] = norm((select(i, ...))) end
    list[#list + 1] = r
  end
  local ok, err = pcall(case, unix, socket, note)
  if not ok then note("raised", (tostring(err):gsub("^[^:]*:%d+: ", ""))) end
  return list
end

local function same(case)
  local ls = run(LSU, LS, case)
  local main = run(TSU, TS, case)
  local task
  ts.spawn(function() task = run(TSU, TS, case) end)
  ts.run()
  assert.same(ls, main)
  assert.same(ls, task)
end

local function tmppath()
  local p = os.tmpname()
  os.remove(p)
  return p
end

-- server, client, accepted on a fresh path
local function trio(unix)
  local p = tmppath()
  local s = unix()
  assert(s:bind(p))
  assert(s:listen())
  local c = unix.stream()
  assert(c:connect(p))
  local a = assert(s:accept())
  return s, c, a, p
end

describe("socket.unix (differential)", function()
  it("is a callable table with stream", function()
    same(function(unix, _, note)
      note(type(unix), type(unix.stream), tostring(unix()):match("^[^:]*"))
      note(tostring(unix.stream()):match("^[^:]*"))
    end)
  end)

  it("binds, listens, accepts and connects by path", function()
    same(function(unix, _, note)
      local p = tmppath()
      local s = unix()
      note(s:bind(p))
      note(s:listen())
      note(s:getsockname() == p)
      local c = unix.stream()
      note(c:connect(p))
      local a = s:accept()
      note(a, c, c:getsockname())
      a:close(); c:close(); s:close(); os.remove(p)
    end)
  end)

  it("sends and receives with the TCP patterns", function()
    same(function(unix, _, note)
      local s, c, a, p = trio(unix)
      note(c:send("hello\r\nworld\n12345"))
      note(a:receive())
      note(a:receive("*l", "pre-"))
      note(a:receive(3))
      a:settimeout(0.05)
      note(a:receive(5))
      note(c:send("abc", 2, -1))
      c:close()
      a:settimeout(1)
      note(a:receive("*a"))
      note(a:receive())
      note(a:getstats() > 0)
      a:close(); s:close(); os.remove(p)
    end)
  end)

  it("fails like LuaSocket: missing path, address in use, path too long", function()
    same(function(unix, _, note)
      note(unix():connect("/nonexistent/dir/sock"))
      local s, c, a, p = trio(unix)
      note(unix():bind(p))
      note(unix():bind(string.rep("x", 200)))
      note(unix():connect(string.rep("x", 200)))
      a:close(); c:close(); s:close(); os.remove(p)
    end)
  end)

  it("connects at once with settimeout(0), then is a client", function()
    same(function(unix, _, note)
      local p = tmppath()
      local s = unix()
      assert(s:bind(p))
      assert(s:listen())
      local c = unix()
      c:settimeout(0)
      note(c:connect(p))
      note(tostring(c):match("^[^:]*"))
      note(pcall(c.connect, c, p))
      s:settimeout(0)
      local a = s:accept()
      note(a ~= nil)
      note(c:send("hi\n"))
      a:settimeout(0)
      note(a:receive())
      note(unix():connect(p .. ".none"))
      a:close() c:close() s:close() os.remove(p)
    end)
  end)

  -- Past a full backlog connect(2) says EAGAIN: LuaSocket then fails with
  -- "timeout" (and closes) if it may not wait, else polls the descriptor,
  -- which, unconnected, is writable at once: it says connected, and only
  -- the next calls find out.
  it("connects past a full backlog as LuaSocket does", function()
    same(function(unix, _, note)
      local p = tmppath()
      local s = unix()
      assert(s:bind(p))
      assert(s:listen(0))
      local first = unix()
      note(first:connect(p))
      local d = unix()
      d:settimeout(0)
      note(d:connect(p))
      note(tostring(d):match("^[^:]*"), d:getfd() >= 0)
      note(d:connect(p))
      local c = unix()
      c:settimeout(0.5)
      note(c:connect(p))
      note(tostring(c):match("^[^:]*"))
      note(c:send("x"))
      note(c:receive(1))
      c:close() d:close() first:close() s:close() os.remove(p)
    end)
  end)

  -- LuaSec's wrap: the descriptor goes to another object, which reads on.
  it("setfd(-1) leaves the descriptor open, for another object to adopt", function()
    same(function(unix, _, note)
      local s, c, a, p = trio(unix)
      local fd = c:getfd()
      note(c:setfd(-1))
      note(c:getfd())
      a:settimeout(0.1)
      note(a:receive())
      note(a:send("one\n"))
      local x = unix()
      x:setfd(fd)
      x:settimeout(1)
      note(x:receive())
      x:close(); a:close(); s:close(); os.remove(p)
    end)
  end)

  it("raises class errors like LuaSocket", function()
    same(function(unix, _, note)
      local m = unix()
      note(pcall(m.send, m, "x"))
      note(pcall(m.accept, m))
      note(pcall(m.setoption, m, "tcp-nodelay", true))
      note(m:setoption("keepalive", true))
      note(m:close(), m:getfd())
    end)
  end)

  it("is selectable", function()
    same(function(unix, socket, note)
      local s, c, a, p = trio(unix)
      local r, _, e = socket.select({ a }, nil, 0.02)
      note(#r, e)
      c:send("x\n")
      r, _, e = socket.select({ a }, nil, 2)
      note(#r, r[1] == a, e)
      a:close(); c:close(); s:close(); os.remove(p)
    end)
  end)
end)

describe("socket.unix: a descriptor made once (differential)", function()
  it("a failed bind or connect, or close, leaves none; bind('') autobinds", function()
    same(function(unix, _, note)
      local p = tmppath()
      local a = unix()
      note(a:bind(p), a:listen())
      local b = unix()
      note(b:bind(p))
      note(b:getfd() >= 0, b:getsockname())
      note(b:bind(p .. "2"))
      note(b:connect(p))
      note(b:listen())
      local c = unix()
      note(c:connect(p .. "-none"))
      note(c:connect(p))
      local d = unix()
      d:close()
      note(d:bind(p .. "3"))
      note(d:connect(p))
      local e, f = unix(), unix()
      note(e:bind(""), f:bind(""), e:listen())
      note(unix():connect(""))
      local g = unix()
      note(g:connect(p))
      a:close() e:close() f:close() g:close()
      os.remove(p)
    end)
  end)
end)

describe("socket.unix in tasklets", function()
  it("blocks only the receiving tasklet", function()
    local s, c, a, p = trio(TSU)
    local ticks, got = 0, nil
    ts.spawn(function() got = a:receive() end)
    ts.spawn(function()
      for _ = 1, 5 do ticks = ticks + 1; ts.yield() end
      c:send("late\n")
    end)
    ts.run()
    assert.equal(5, ticks)
    assert.equal("late", got)
    a:close(); c:close(); s:close(); os.remove(p)
  end)

  it("serves many clients through one accept loop", function()
    local p = tmppath()
    local s = TSU()
    assert(s:bind(p)); assert(s:listen(64))
    local n = 0
    ts.spawn(function()
      for _ = 1, 20 do
        local a = assert(s:accept())
        ts.spawn(function() a:send(a:receive():upper() .. "\n"); a:close() end)
      end
    end)
    for i = 1, 20 do
      ts.spawn(function()
        local c = TSU.stream()
        assert(c:connect(p))
        c:send("c" .. i .. "\n")
        if c:receive() == "C" .. i then n = n + 1 end
        c:close()
      end)
    end
    ts.run()
    assert.equal(20, n)
    s:close(); os.remove(p)
  end)
end)
