-- socket.dns: differential against Debian's LuaSocket, lookups that block
-- only their tasklet, kills and collection while the pool still works.
-- Only names this machine resolves itself (/etc/hosts) and names under the
-- reserved .invalid TLD, which never resolve.
local ts = require "tasksock"
local dns = ts.dns
local ls = require("socket").dns

-- Run f(...) in a tasklet and return what it returned (packed).
local function intasklet(f, ...)
  local t = ts.spawn(function(...) return table.pack(f(...)) end, ...)
  ts.run()
  local ok, r = t:join()
  assert(ok, r)
  return r
end

-- Same results (values, types, integer vs float keys) from LuaSocket and
-- from tasksock, both in the main chunk and in a tasklet.
local function same(name, ...)
  local want = table.pack(pcall(ls[name], ...))
  local got = table.pack(pcall(dns[name], ...))
  assert.same(want, got)
  local inside = intasklet(pcall, dns[name], ...)
  assert.same(want, inside)
  return table.unpack(got, 2, got.n)
end

local NOHOST = "no-such-host.invalid"

describe("socket.dns.toip", function()
  it("resolves localhost as LuaSocket does", function()
    local ip, res = same("toip", "localhost")
    assert.equal("127.0.0.1", ip)
    assert.equal("localhost", res.name)
  end)
  it("resolves a numeric address by reverse lookup as LuaSocket does", function()
    same("toip", "127.0.0.1")
    same("toip", "127.1")  -- inet_aton's short forms
  end)
  it("does not take IPv6 literals, as LuaSocket (gethostbyname)", function()
    local ip, err = same("toip", "::1")
    assert.is_nil(ip)
    assert.equal("host not found", err)
  end)
  it("says 'host not found' for a name that does not exist", function()
    assert.same({nil, "host not found"}, {same("toip", NOHOST)})
  end)
  it("fails on the empty name with LuaSocket's words", function()
    same("toip", "")
  end)
  it("resolves this machine's own name", function()
    same("toip", dns.gethostname())
  end)
  it("raises an argument error for a non-string", function()
    same("toip")
    same("toip", {})
    assert.error_matches(function() dns.toip() end, "bad argument #1 to 'toip'")
  end)
end)

describe("socket.dns.tohostname", function()
  it("names localhost and 127.0.0.1 as LuaSocket does", function()
    assert.equal("localhost", (same("tohostname", "localhost")))
    same("tohostname", "127.0.0.1")
  end)
  it("fails as LuaSocket for ::1, unknown names and unknown addresses", function()
    same("tohostname", "::1")
    same("tohostname", NOHOST)
    same("tohostname", "10.255.254.253")
  end)
  it("raises an argument error for a non-string", function()
    same("tohostname", nil)
  end)
end)

describe("socket.dns.getaddrinfo", function()
  it("lists the addresses of localhost, 127.0.0.1 and ::1", function()
    same("getaddrinfo", "localhost")
    same("getaddrinfo", "127.0.0.1")
    assert.same({{family = "inet6", addr = "::1"}}, (same("getaddrinfo", "::1")))
  end)
  it("fails with LuaSocket's words for unknown and empty names", function()
    assert.same({nil, "host or service not provided, or not known"},
                {same("getaddrinfo", NOHOST)})
    same("getaddrinfo", "")
  end)
  it("raises an argument error without a host", function()
    same("getaddrinfo")
  end)
end)

describe("socket.dns.getnameinfo", function()
  it("names an address, with and without a service", function()
    same("getnameinfo", "127.0.0.1")
    same("getnameinfo", "127.0.0.1", 80)
    same("getnameinfo", "::1", 22)
    same("getnameinfo", "localhost", "http")
  end)
  it("names only the service when the host is nil", function()
    assert.same({{}, "http"}, {same("getnameinfo", nil, 80)})
    same("getnameinfo", nil, "65000")
  end)
  it("fails with LuaSocket's words for unknown hosts and services", function()
    same("getnameinfo", NOHOST)
    same("getnameinfo", "localhost", "no-such-service")
  end)
  it("raises when host and serv are both nil, as LuaSocket", function()
    same("getnameinfo")
    assert.error_matches(function() dns.getnameinfo() end, "host and serv cannot be both nil")
    same("getnameinfo", {}, 80)
  end)
end)

describe("socket.dns.gethostname", function()
  it("returns the machine's name as LuaSocket does", function()
    assert.is_string((same("gethostname")))
  end)
end)

describe("socket.dns lookups", function()
  it("block only their tasklet: another one keeps running meanwhile", function()
    local ticks, done = 0, false
    local during = {}
    ts.spawn(function()
      -- bounded in time, not in count: under valgrind a million yields
      -- pass before the slowest lookup ends
      local deadline = ts.now() + 60
      while not done and ts.now() < deadline do
        ticks = ticks + 1
        ts.yield()
      end
    end)
    ts.spawn(function()
      local lookups = {
        function() return dns.toip("localhost") end,
        function() return dns.tohostname("127.0.0.1") end,
        function() return dns.getaddrinfo("localhost") end,
        function() return dns.getnameinfo("127.0.0.1", 80) end,
        function() return dns.toip(NOHOST) end,
      }
      for i, f in ipairs(lookups) do
        local before = ticks
        assert(select("#", f()) > 0)
        during[i] = ticks - before
      end
      done = true
    end)
    ts.run()
    assert.equal(5, #during)
    for i = 1, 5 do assert.is_true(during[i] > 0, "lookup " .. i .. " did not yield") end
  end)

  it("run concurrently from many tasklets", function()
    local got = {}
    for i = 1, 50 do
      ts.spawn(function()
        got[i] = (i % 2 == 0) and dns.toip("localhost") or dns.getaddrinfo("localhost")[1].addr
      end)
    end
    ts.run()
    for i = 1, 50 do assert.equal("127.0.0.1", got[i]) end
  end)

  it("drive the loop in the main chunk, so tasklets run meanwhile", function()
    local ran = false
    ts.spawn(function() ran = true end)
    assert.equal("127.0.0.1", (dns.toip("localhost")))
    assert.is_true(ran)
  end)

  it("give numeric addresses at once, without waiting", function()
    local t = ts.spawn(function()
      -- a C-call boundary (table.sort's comparator) cannot yield: a numeric
      -- lookup does not need to
      local r
      table.sort({2, 1}, function(a, b)
        r = r or dns.getaddrinfo("127.0.0.1")
        return a < b
      end)
      return r[1].addr
    end)
    ts.run()
    assert.same({true, "127.0.0.1"}, {t:join()})
  end)

  it("raise a clear error where a tasklet cannot block", function()
    local t = ts.spawn(function()
      table.sort({2, 1}, function(a, b) dns.toip("localhost"); return a < b end)
    end)
    local old = ts.onerror(function() end)  -- expected: keep the report quiet
    ts.run()
    ts.onerror(old)
    local ok, err = t:join()
    assert.is_false(ok)
    assert.matches("attempt to block across a C%-call boundary", err)
  end)

  it("can be killed while waiting; the pool's result is freed later", function()
    local ok_after
    for _ = 1, 3 do
      local waiters = {}
      for i = 1, 40 do
        local kinds = {"toip", "tohostname", "getaddrinfo", "getnameinfo"}
        local k = kinds[i % 4 + 1]
        waiters[i] = ts.spawn(function() return dns[k](k == "tohostname" and "127.0.0.1" or "localhost") end)
      end
      ts.spawn(function()
        for i = 1, 40 do assert.is_true(waiters[i]:kill("stop")) end
      end)
      ts.run()
      for i = 1, 40 do assert.same({false, "stop"}, {waiters[i]:join()}) end
      collectgarbage()
    end
    -- the pool finishes the abandoned work; lookups still work afterwards
    ts.spawn(function() ts.sleep(0.05); ok_after = dns.toip("localhost") end)
    ts.run()
    assert.equal("127.0.0.1", ok_after)
  end)

  it("show as waiting on dns in ts.tasklets()", function()
    local seen
    local t = ts.spawn(function() return dns.toip("localhost") end)
    ts.spawn(function()  -- runs right after t blocked, before the pool can answer
      for _, info in ipairs(ts.tasklets()) do
        if info.tasklet == t then seen = info end
      end
    end)
    ts.run()
    assert.equal("127.0.0.1", (select(2, t:join())))
    assert.equal("blocked", seen.status)
    assert.equal("dns", seen.waiting)
  end)
end)
