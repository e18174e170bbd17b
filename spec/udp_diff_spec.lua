-- UDP, differential: every case runs against Debian's LuaSocket and against
-- tasksock (in the main chunk and in a tasklet) and must give the same
-- values, types and error strings. Ports and descriptors, which differ
-- from run to run, are checked by the cases themselves and not returned.
local ts = require "tasksock"
local C = require("tasksock.core")._socket
local luasocket = require "socket"

local TS = {udp = C.udp, udp4 = C.udp4, udp6 = C.udp6, select = require("tasksock.socket").select}
local LS = {udp = luasocket.udp, udp4 = luasocket.udp4, udp6 = luasocket.udp6,
  select = luasocket.select}

local function class(s) return (tostring(s):match("^([^:]+): 0x%x+$")) end

-- A bound receiver for a case: sock, port (a number).
local function receiver(S, family)
  local r = assert((family == "inet6" and S.udp6 or S.udp4)())
  assert(r:setsockname(family == "inet6" and "::1" or "127.0.0.1", 0))
  local _, port = r:getsockname()
  return r, tonumber(port)
end

-- Run case(S) with both namespaces; the results must be the same.
local function same(case)
  local want = table.pack(pcall(case, LS))
  local got = table.pack(pcall(case, TS))
  assert.same(want, got)
  local t = ts.spawn(function() return table.pack(pcall(case, TS)) end)
  ts.run()
  local ok, inside = t:join()
  assert.is_true(ok)
  assert.same(want, inside)
  return table.unpack(want, 1, want.n)
end

describe("socket.udp, udp4, udp6", function()
  it("make udp{unconnected} objects; udp() makes no descriptor yet", function()
    same(function(S)
      local u, u4, u6 = S.udp(), S.udp4(), S.udp6()
      return class(u), class(u4), class(u6), u:getfd(), u4:getfd() >= 0,
             u:getfamily(), u4:getfamily(), u6:getfamily(),
             u6:getoption("ipv6-v6only"), u4:getoption("reuseaddr")
    end)
  end)
end)

describe("udp:getsockname", function()
  it("gives ip, port as a string, family; fails without a descriptor", function()
    same(function(S)
      local a, b, c = S.udp4():getsockname()
      local d, e, f = S.udp6():getsockname()
      local r = receiver(S)
      local ip, port, fam = r:getsockname()
      return a, b, c, d, e, f, ip, type(port), fam, S.udp():getsockname()
    end)
  end)
end)

describe("udp:setsockname", function()
  it("keeps the socket it made when the bind fails, its family still unspec", function()
    -- LuaSocket's test/udpconnectclnt.lua binds fixed ports and prints
    -- getsockname whether the bind worked or not.
    same(function(S)
      local r, port = receiver(S)
      local u = S.udp()
      local ok, err = u:setsockname("127.0.0.1", port)
      local ip, p, fam = u:getsockname()
      local fd = u:getfd()
      local ok2 = u:setsockname("127.0.0.1", 0)
      local ip2, _, fam2 = u:getsockname()
      u:close(); r:close()
      return ok, err, ip, p, fam, fd >= 0, ok2, ip2, fam2
    end)
  end)
end)

describe("udp:sendto and udp:receivefrom", function()
  it("carry datagrams with the sender's address", function()
    same(function(S)
      local r, port = receiver(S)
      local s = S.udp()
      local n = s:sendto("hello", "127.0.0.1", port)
      local n2 = s:sendto("world", "127.0.0.1", tostring(port))
      local _, sport = s:getsockname()
      r:settimeout(1)
      local d, ip, p = r:receivefrom()
      local d2, ip2, p2 = r:receivefrom(3)
      return n, n2, s:getfamily(), d, ip, math.type(p), p == tonumber(sport), d2, ip2, p2 == p
    end)
  end)

  it("truncate to the size asked, 8192 by default, and keep empty datagrams", function()
    same(function(S)
      local r, port = receiver(S)
      local s = S.udp4()
      r:settimeout(1)
      local out = {}
      out[#out + 1] = s:sendto(string.rep("x", 10000), "127.0.0.1", port)
      out[#out + 1] = #r:receive()
      s:sendto(string.rep("y", 10000), "127.0.0.1", port)
      out[#out + 1] = #r:receive(20000)
      s:sendto("", "127.0.0.1", port)
      out[#out + 1] = r:receive()
      s:sendto("abcdef", "127.0.0.1", port)
      out[#out + 1] = r:receive(2.9)
      s:sendto("discarded", "127.0.0.1", port)
      out[#out + 1] = r:receive(0)
      s:sendto("ipv6?", "127.0.0.1", port)
      out[#out + 1] = r:receive("5")
      r:settimeout(0)
      out[#out + 1] = select(2, r:receive())  -- nothing left: the rests were dropped
      return table.unpack(out)
    end)
  end)

  it("work over IPv6", function()
    same(function(S)
      local r, port = receiver(S, "inet6")
      local s = S.udp()
      r:settimeout(1)
      local n = s:sendto("six", "::1", port)
      local d, ip = r:receivefrom()
      return n, s:getfamily(), s:getoption("ipv6-v6only"), d, ip
    end)
  end)

  it("fail as LuaSocket on names, bad ports, families and sizes", function()
    same(function(S)
      local s, s6 = S.udp4(), S.udp6()
      local out = {}
      local function add(...) for i = 1, select("#", ...) do out[#out + 1] = select(i, ...) end end
      add(s:sendto("x", "localhost", 9))
      add(s:sendto("x", "127.0.0.1", "http"))
      add(s:sendto("x", "127.0.0.1", 0))
      add(s6:sendto("x", "127.0.0.1", 9))
      add(s:sendto(string.rep("x", 70000), "127.0.0.1", 9))
      add(s:sendto(5, "127.0.0.1", 9))
      add(pcall(s.sendto, s, "x", "127.0.0.1"))
      add(pcall(s.sendto, s, {}, "127.0.0.1", 9))
      return table.unpack(out)
    end)
  end)

  it("report what LuaSocket reports without a descriptor or after close", function()
    same(function(S)
      local u, c = S.udp(), S.udp4()
      local a = {u:receive()}
      local b = {u:receivefrom()}
      c:close()
      return a[1], b[1], b[2], c:receive(), c:sendto("x", "127.0.0.1", 9)
    end)
  end)
end)

describe("udp:receive", function()
  it("times out at once with settimeout(0) and after the timeout otherwise", function()
    same(function(S)
      local r = receiver(S)
      r:settimeout(0)
      local a, b = r:receive()
      r:settimeout(0.02)
      local c, d = r:receive()
      r:settimeout(0.02, "t")
      local e, f = r:receivefrom()
      local u = S.udp4()  -- never bound: nothing can arrive
      u:settimeout(0.02)
      return a, b, c, d, e, f, u:receive()
    end)
  end)

  it("reads LuaSocket's size argument as it does", function()
    same(function(S)
      local r = receiver(S)
      r:settimeout(0)
      return r:receive(-1), pcall(r.receive, r, "abc")
    end)
  end)
end)

describe("udp:setpeername, udp:send, udp:getpeername", function()
  it("connect, send, and disconnect with '*'", function()
    same(function(S)
      local r, port = receiver(S)
      local c = S.udp()
      local out = {c:setpeername("127.0.0.1", port), class(c)}
      local ip, p, fam = c:getpeername()
      out[#out + 1] = ip; out[#out + 1] = p == port; out[#out + 1] = math.type(p); out[#out + 1] = fam
      out[#out + 1] = c:send("abc")
      r:settimeout(1)
      out[#out + 1] = r:receive()
      local lip = c:getsockname()
      out[#out + 1] = lip
      out[#out + 1] = c:setpeername("*")
      out[#out + 1] = class(c)
      out[#out + 1] = c:getsockname()
      out[#out + 1] = select(2, pcall(c.getpeername, c))
      return table.unpack(out)
    end)
  end)

  it("re-connect a connected socket elsewhere", function()
    same(function(S)
      local r1, p1 = receiver(S)
      local r2, p2 = receiver(S)
      local c = S.udp4()
      c:setpeername("127.0.0.1", p1)
      local ok = c:setpeername("localhost", p2)
      c:send("to two")
      r2:settimeout(1)
      r1:settimeout(0)
      return ok, select(2, c:getpeername()) == p2, r2:receive(), r1:receive()
    end)
  end)

  it("get 'connection refused' from a closed port", function()
    same(function(S)
      local r, port = receiver(S)
      r:close()  -- the port is closed now
      local c = S.udp4()
      c:setpeername("127.0.0.1", port)
      c:settimeout(1)
      local n = c:send("x")
      return n, c:receive()
    end)
  end)

  it("fail on unknown names, services and families as LuaSocket", function()
    same(function(S)
      return select(2, S.udp():setpeername("no-such-host.invalid", 9)),
             select(2, S.udp():setpeername("127.0.0.1", "http")),
             select(2, S.udp4():setpeername("::1", 9)),
             pcall(S.udp().setpeername, S.udp(), "127.0.0.1")
    end)
  end)

  it("give 'refused' when sending on a closed connected socket", function()
    same(function(S)
      local _, port = receiver(S)
      local c = S.udp()
      c:setpeername("127.0.0.1", port)
      c:close()
      return c:send("x"), c:receive(), c:getpeername()
    end)
  end)
end)

describe("udp:setsockname", function()
  it("binds, and fails as LuaSocket", function()
    same(function(S)
      local a = S.udp()
      local ok = a:setsockname("*", 0)
      local ip, _, fam = a:getsockname()
      local b = S.udp()
      local ok2 = b:setsockname("localhost", 0)
      local _, port = b:getsockname()
      local c = S.udp()
      local ok3 = c:setsockname("::1", 0)
      return ok, a:getfamily(), ip, fam, ok2, c:getfamily(), ok3, c:getoption("ipv6-v6only"),
             b:setsockname("127.0.0.1", 0),
             S.udp4():setsockname("127.0.0.1", port),
             S.udp():setsockname("no-such-host.invalid", 0),
             S.udp6():setsockname("127.0.0.1", 0),
             S.udp4():setsockname("10.254.254.254", 0),
             pcall(S.udp().setsockname, S.udp(), "127.0.0.1")
    end)
  end)

  it("makes a new socket after close, as LuaSocket", function()
    same(function(S)
      local a = S.udp4()
      a:close()
      local ok = a:setsockname("127.0.0.1", 0)
      return ok, a:getfd() >= 0, (a:getsockname())
    end)
  end)
end)

describe("udp methods on the wrong class", function()
  it("raise LuaSocket's argument errors", function()
    same(function(S)
      local u = S.udp()
      local c = S.udp(); c:setpeername("127.0.0.1", 9)
      local out = {}
      for _, m in ipairs{"send", "getpeername"} do out[#out + 1] = select(2, pcall(u[m], u, "x")) end
      for _, m in ipairs{"sendto", "receivefrom", "setsockname"} do
        out[#out + 1] = select(2, pcall(c[m], c, "x", "127.0.0.1", 9))
      end
      out[#out + 1] = select(2, pcall(u.receive, {}))
      return table.unpack(out)
    end)
  end)
end)

describe("udp:close", function()
  it("returns 1, may be repeated, leaves getfd -1", function()
    same(function(S)
      local u = S.udp4()
      return u:close(), u:close(), u:getfd(), class(u), u:getsockname()
    end)
  end)
end)

describe("udp:settimeout and udp:gettimeout", function()
  it("keep block and total times as LuaSocket", function()
    same(function(S)
      local u = S.udp()
      local out = {u:gettimeout()}
      out[#out + 1] = u:settimeout(1.5)
      out[#out + 1] = u:settimeout(2, "t")
      for _, v in ipairs{u:gettimeout()} do out[#out + 1] = v end
      u:settimeout(nil); u:settimeout(-3, "r")
      for _, v in ipairs{u:gettimeout()} do out[#out + 1] = v end
      out[#out + 1] = select(2, pcall(u.settimeout, u, 1, "x"))
      return table.unpack(out)
    end)
  end)
end)

describe("a setpeername that fails", function()
  it("leaves the peer it had (the kernel keeps it); one to port 0 can be changed", function()
    same(function(S)
      local c = S.udp4()
      local out = {}
      local function add(...) for i = 1, select("#", ...) do out[#out + 1] = select(i, ...) end end
      add(c:setpeername("127.0.0.1", 9), c:setpeername("127.0.0.2", 10))
      add(c:setpeername("255.255.255.255", 9))  -- no broadcast option: refused
      add(c:getpeername())
      add(c:send("x"), class(c))
      local d = S.udp4()
      add(d:setpeername("127.0.0.1", 0), d:setpeername("127.0.0.1", 9), d:getpeername())
      c:close() d:close()
      return table.unpack(out)
    end)
  end)
end)

describe("select on a connected udp socket", function()
  it("leaves an ICMP error pending for receive (a peek would take it)", function()
    same(function(S)
      local d = receiver(S, "inet")
      local _, port = d:getsockname()
      d:close()
      local c = S.udp4()
      assert(c:setpeername("127.0.0.1", port))
      c:settimeout(2)
      local out = {}
      for _ = 1, 2 do
        assert(c:send("x"))
        local r = S.select({ c }, nil, 2)
        out[#out + 1] = #r
        out[#out + 1] = select(2, c:receive())
      end
      c:close()
      return table.unpack(out)
    end)
  end)
end)

describe("a NaN timeout, as LuaSocket's timeout_get", function()
  it("is kept, acts as 0 alone and leaves a total in force beside it", function()
    same(function(S)
      local u = receiver(S, "inet")
      u:settimeout(0 / 0)
      local b, t = u:gettimeout()
      local out = { tostring(b), t }
      local t0 = luasocket.gettime()
      out[#out + 1] = select(2, u:receive())
      out[#out + 1] = luasocket.gettime() - t0 < 0.5  -- at once
      u:settimeout(0.2, "t")                         -- beside a total
      t0 = luasocket.gettime()
      out[#out + 1] = select(2, u:receive())
      out[#out + 1] = luasocket.gettime() - t0 >= 0.15
      u:settimeout(-1)
      u:settimeout(0 / 0, "t")                       -- a NaN total
      t0 = luasocket.gettime()
      out[#out + 1] = select(2, u:receivefrom())
      out[#out + 1] = luasocket.gettime() - t0 < 0.5
      u:close()
      return table.unpack(out)
    end)
  end)
end)

describe("udp:dirty and udp:getfd", function()
  it("are false and a float", function()
    same(function(S)
      local u = S.udp4()
      return u:dirty(), math.type(u:getfd()), math.type(S.udp():getfd())
    end)
  end)
end)

describe("udp:setoption and udp:getoption", function()
  it("handle LuaSocket's UDP options", function()
    same(function(S)
      local a, b = S.udp4(), S.udp6()
      local out = {}
      local function add(...) for i = 1, select("#", ...) do out[#out + 1] = select(i, ...) end end
      add(a:getoption("reuseaddr"), a:getoption("reuseport"), a:getoption("broadcast"),
          a:getoption("dontroute"), a:getoption("error"))
      add(a:setoption("broadcast", true), a:getoption("broadcast"))
      add(a:setoption("reuseaddr", true), a:getoption("reuseaddr"))
      add(a:setoption("reuseport", true), a:getoption("reuseport"))
      add(a:setoption("dontroute", true), a:getoption("dontroute"))
      add(a:getoption("ip-multicast-if"), a:getoption("ip-multicast-loop"))
      add(a:setoption("ip-multicast-ttl", 4), a:setoption("ip-multicast-loop", false),
          a:getoption("ip-multicast-loop"))
      add(a:setoption("ip-multicast-if", "127.0.0.1"), a:getoption("ip-multicast-if"))
      add(a:setoption("ip-add-membership", {multiaddr = "239.1.2.3", interface = "127.0.0.1"}))
      add(a:setoption("ip-drop-membership", {multiaddr = "239.1.2.3", interface = "127.0.0.1"}))
      add(a:setoption("recv-buffer-size", 65536), a:getoption("recv-buffer-size"))
      add(a:setoption("send-buffer-size", 65536), a:getoption("send-buffer-size"))
      add(a:getoption("ipv6-v6only"))
      add(b:setoption("ipv6-unicast-hops", 7), b:getoption("ipv6-unicast-hops"))
      add(b:setoption("ipv6-multicast-hops", 9), b:getoption("ipv6-multicast-hops"),
          b:getoption("ipv6-unicast-hops"))
      add(b:getoption("ipv6-multicast-loop"), b:setoption("ipv6-multicast-loop", false))
      add(b:setoption("ipv6-v6only", false), b:getoption("ipv6-v6only"))
      local u = S.udp()  -- no descriptor yet
      add(u:setoption("broadcast", true), u:getoption("broadcast"))
      return table.unpack(out)
    end)
  end)

  it("raise LuaSocket's argument errors", function()
    same(function(S)
      local a = S.udp4()
      local out = {}
      local function err(...) out[#out + 1] = select(2, pcall(...)) end
      err(a.setoption, a, "nope", 1)
      err(a.getoption, a, "nope")
      err(a.getoption, a, "ip-multicast-ttl")
      err(a.setoption, a, "error", 1)
      err(a.setoption, a, "broadcast", 1)
      err(a.setoption, a, "broadcast")
      err(a.setoption, a, "ip-multicast-if", "x")
      err(a.setoption, a, "ip-add-membership", 5)
      err(a.setoption, a, "ip-add-membership", {})
      err(a.setoption, a, "ip-add-membership", {multiaddr = "x", interface = "*"})
      err(a.setoption, a, "ip-add-membership", {multiaddr = "239.1.1.1", interface = "y"})
      return table.unpack(out)
    end)
  end)
end)
