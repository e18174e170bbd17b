-- The drop-in: install/uninstall, LuaSocket's pure-Lua layers over tasksock,
-- the debug convention, and unmodified LuaSocket scripts in two processes.
local ts = require "tasksock"
local H = require "spec.helper.luasocket_diff"
local dropin = require "tasksock.dropin"

local LS = H.luasocket
local TS = H.tasksock

local function installed(opts, f)
  local socket = ts.install(opts)
  local ok, err = pcall(f, socket)
  ts.uninstall()
  assert(ok, err)
end

describe("tasksock.install", function()
  it("makes socket and socket.core tasksock's namespace", function()
    installed(nil, function(socket)
      assert.equal(TS, socket)
      assert.equal(TS, require "socket")
      assert.equal(TS, require "socket.core")
      assert.is_true(dropin.installed())
    end)
  end)

  it("gives socket.unix as tasksock's Unix-domain sockets", function()
    installed(nil, function()
      local unix = require "socket.unix"
      assert.equal(require "tasksock.unix", unix)
    end)
  end)

  it("loads LuaSocket's pure-Lua layers over tasksock", function()
    installed(nil, function(socket)
      local http = require "socket.http"
      assert.equal(http, socket.http)
      assert.equal("function", type(require("socket.url").parse))
      assert.equal("function", type(require("socket.smtp").send))
      assert.equal("function", type(require("socket.ftp").get))
      assert.equal("function", type(require("socket.tp").connect))
      assert.equal("table", type(require "socket.headers"))
      assert.equal("function", type(require("mime").b64))
      assert.equal("table", type(require "ltn12"))
    end)
  end)

  it("is idempotent", function()
    local a = ts.install()
    local b = ts.install()
    ts.uninstall()
    assert.equal(a, b)
    ts.uninstall()  -- a second uninstall does nothing
    assert.equal(LS, require "socket")
  end)
end)

describe("tasksock.uninstall", function()
  it("gives the real LuaSocket back to later requires", function()
    installed(nil, function() require "socket.http" end)
    assert.equal(LS, require "socket")
    assert.is_false(dropin.installed())
    local http = require "socket.http"
    assert.equal(LS.http, http)
    assert.is_nil(rawget(TS, "http"))
  end)
end)

describe("install{debug = true}", function()
  it("sets socket._DEBUG and appends the elapsed time to send and receive", function()
    installed({ debug = true }, function(socket)
      assert.is_true(socket._DEBUG)
      local c, a, srv = H.pair(socket)
      local r = table.pack(c:send("line\n"))
      assert.equal(4, r.n)
      assert.equal(5, r[1])
      assert.is_true(type(r[4]) == "number" and r[4] >= 0)
      r = table.pack(a:receive())
      assert.equal(4, r.n)
      assert.equal("line", r[1])
      assert.is_true(type(r[4]) == "number" and r[4] >= 0)
      a:settimeout(0.05)
      r = table.pack(a:receive())
      assert.same({ nil, "timeout", "" }, { r[1], r[2], r[3] })
      assert.is_true(r[4] >= 0.04)
      c:close(); a:close(); srv:close()
    end)
  end)

  it("raises send/receive argument errors as LuaSocket does (number, name, position)", function()
    -- LuaSocket's errors come from its C methods; the debug wrappers must not
    -- shift the argument number, the name or the position. Plain calls, not
    -- tail calls (a tail call leaves no caller frame for the wrapper to use).
    local function errors(socket)
      local c, a, srv = H.pair(socket)
      local f = c.send
      local list = {}
      for _, call in ipairs {
        function() local r = c:send() return r end,
        function() local r = c:send({}) return r end,
        function() local r = c:send("x", "a") return r end,
        function() local r = c:receive({}) return r end,
        function() local r = c:receive("*z") return r end,
        function() local r = c:receive("*a", {}) return r end,
        function() local r = c.send(c) return r end,
        function() local r = c.send(5) return r end,
        function() local r = f(c) return r end,
        function() return pcall(c.send, c) end,
      } do
        local ok, err, perr = pcall(call)
        list[#list + 1] = tostring(ok) .. " " .. tostring(err) .. " " .. tostring(perr)
      end
      c:close(); a:close(); srv:close()
      return list
    end
    local want = errors(LS)
    installed({ debug = true }, function(socket)
      assert.same(want, errors(socket))
      local got
      ts.spawn(function() got = errors(socket) end)
      ts.run()
      assert.same(want, got)
    end)
  end)

  it("is off again after a plain install and after uninstall", function()
    installed({ debug = true }, function() end)
    assert.is_nil(TS._DEBUG)
    local c, a, srv = H.pair(TS)
    assert.equal(3, select("#", c:send("x\n")))
    assert.equal(3, select("#", a:receive()))
    c:close(); a:close(); srv:close()
  end)
end)

describe("socket.http.request over the drop-in", function()
  it("serves 50 tasklets at once in about one request's time", function()
    installed(nil, function(socket)
      local http = require "socket.http"
      local srv = assert(socket.bind("127.0.0.1", 0, 128))
      local _, port = srv:getsockname()
      local server = ts.spawn(function()
        for _ = 1, 50 do
          local c = assert(srv:accept())
          ts.spawn(function()
            repeat local l = c:receive() until l == "" or l == nil
            ts.sleep(0.2)
            c:send("HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            c:close()
          end)
        end
      end)
      local ok, t0 = 0, socket.gettime()
      for i = 1, 50 do
        ts.spawn(function()
          local body, code = http.request("http://127.0.0.1:" .. port .. "/" .. i)
          if body == "hello" and code == 200 then ok = ok + 1 end
        end)
      end
      ts.run()
      local dt = socket.gettime() - t0
      srv:close()
      assert.equal("dead", server:status())
      assert.equal(50, ok)
      assert.is_true(dt < 1.0, ("50 requests took %.3f s"):format(dt))
    end)
  end)
end)

describe("ltn12 over socket.sink/socket.source", function()
  it("pumps a body through a socket", function()
    installed(nil, function(socket)
      local ltn12 = require "ltn12"
      local c, a, srv = H.pair(socket)
      local body = string.rep("0123456789", 5000)
      ts.spawn(function()
        assert(ltn12.pump.all(ltn12.source.string(body), socket.sink("close-when-done", c)))
      end)
      local got = {}
      ts.spawn(function()
        assert(ltn12.pump.all(socket.source("until-closed", a), (ltn12.sink.table(got))))
      end)
      ts.run()
      local all = table.concat(got)
      assert.equal(#body, #all)
      assert.is_true(all == body)
      srv:close()
    end)
  end)
end)

describe("socket.smtp over the drop-in", function()
  it("sends a message to a small fake SMTP server", function()
    installed(nil, function(socket)
      local smtp = require "socket.smtp"
      local srv = assert(socket.bind("127.0.0.1", 0))
      local _, port = srv:getsockname()
      local seen = {}
      ts.spawn(function()
        local c = assert(srv:accept())
        c:send("220 fake ESMTP\r\n")
        while true do
          local l = c:receive()
          if not l then break end
          seen[#seen + 1] = l:match("^(%u+)") or l
          if l:match("^EHLO") then c:send("250-fake\r\n250 OK\r\n")
          elseif l == "DATA" then
            c:send("354 go\r\n")
            repeat l = c:receive() until l == "." or not l
            c:send("250 queued\r\n")
          elseif l == "QUIT" then c:send("221 bye\r\n"); break
          else c:send("250 OK\r\n") end
        end
        c:close()
      end)
      local r, e
      ts.spawn(function()
        r, e = smtp.send {
          from = "<a@example.org>", rcpt = "<b@example.org>",
          server = "127.0.0.1", port = port,
          source = smtp.message { headers = { subject = "hi" }, body = "hello" },
        }
      end)
      ts.run()
      srv:close()
      assert.equal(1, r, e)
      assert.same({ "EHLO", "MAIL", "RCPT", "DATA", "QUIT" }, seen)
    end)
  end)
end)

describe("unmodified LuaSocket scripts in two processes", function()
  local function run(loader)
    local env = ("LUA_PATH=%q LUA_CPATH=%q "):format(package.path, package.cpath)
    local lua = env .. "lua5.4 " .. loader .. " "
    local server = assert(io.popen(lua .. "spec/scripts/echo_server.lua"))
    local port = server:read("l")
    assert(tonumber(port), "the server gave no port")
    local client = assert(io.popen(lua .. "spec/scripts/echo_client.lua " .. port .. " 2>&1"))
    local cout = client:read("a")
    client:close()
    local sout = server:read("a")
    server:close()
    return cout, sout
  end

  it("behave the same with the drop-in as with LuaSocket", function()
    local c1, s1 = run("")
    local c2, s2 = run("-l tasksock.install")
    local c3, s3 = run("-e 'require\"tasksock\".install()'")
    assert.matches("client done", c1)
    assert.matches("server done", s1)
    assert.equal(c1, c2)
    assert.equal(s1, s2)
    assert.equal(c1, c3)
    assert.equal(s1, s3)
  end)
end)
