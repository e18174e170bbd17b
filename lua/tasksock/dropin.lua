-- tasksock.dropin: put tasksock in place of LuaSocket for everything required
-- afterwards, and take it out again.
--
--   require("tasksock").install([opts])   -- or: lua5.4 -l tasksock.install
--   require("tasksock").uninstall()
--
-- install makes `require "socket"` and `require "socket.core"` give
-- tasksock's namespace (tasksock.socket) and `require "socket.unix"` its
-- Unix-domain sockets; LuaSocket's pure-Lua layers from the system
-- (socket.http, socket.url, socket.smtp, socket.ftp, socket.tp,
-- socket.headers) then load over it, and ltn12 and mime are LuaSocket's own
-- (they do no I/O). Modules that were required before install keep what they
-- captured then. uninstall clears every "socket" and "socket.*" module that was
-- loaded while installed and puts back what was loaded before, so a later
-- require gets the real LuaSocket.
--
-- opts.debug = true: LuaSocket's debug convention (socket._DEBUG is true and a
-- stream socket's send and receive return the elapsed time of the call as one
-- more value, as LuaSocket built with LUASOCKET_DEBUG does). Only the method
-- tables are swapped: the normal path is unchanged. Argument errors from the
-- wrapped methods read as LuaSocket's (number, name, position), except when
-- the method is tail-called (`return sock:send(x)`): then the caller's frame
-- is gone, a method call is assumed and the message has no position.
local M = {}

local installed = false
local saved = {}          -- package.loaded entries that install took away
local nskeys = {}         -- the namespace's own keys (modules add theirs)
local debugged = {}       -- method table -> { name = original function }

local function ismodule(name)
  return name == "socket" or name:sub(1, 7) == "socket."
end

-- The method tables of the stream client classes (send/receive live there).
local function streammethods()
  local methods = require("tasksock.core")._socket._methods
  local list = {}
  for _, class in ipairs { "tcp{client}", "unixstream{client}" } do
    local idx = methods(class)
    if idx then list[#list + 1] = idx end
  end
  return list
end

-- A debug wrapper calls the C method through pcall, so an argument error
-- names no position and no function ("bad argument #n to '?' (...)", n
-- counting self), and is raised again as the C method would have raised it
-- had the caller called it directly: LuaSocket's methods are C functions, so
-- the caller's position, the name the caller used, and n - 1 (or "calling
-- 'name' on bad self") for a method call, as luaL_argerror does. Any other
-- error (a kill, say) goes on unchanged.
local function argerror(err, name, namewhat)
  if type(err) ~= "string" then return err, 0 end
  local n, msg = err:match("^bad argument #(%d+) to '%?' (%(.*%))$")
  if not n then return err, 0 end
  n = tonumber(n)
  if namewhat == "method" then
    n = n - 1
    if n == 0 then
      return ("calling '%s' on bad self %s"):format(name, msg), 2
    end
  end
  return ("bad argument #%d to '%s' %s"):format(n, name or "?", msg), 2
end

local function debugwrap(method, name, gettime)
  return function(self, ...)
    local t0 = gettime()
    local ok, a, b, c = pcall(method, self, ...)
    if ok then return a, b, c, gettime() - t0 end
    local info = debug.getinfo(1, "nt")
    if info.istailcall then  -- the caller's frame is gone: assume sock:name()
      error((argerror(a, name, "method")), 0)
    end
    error(argerror(a, info.name, info.namewhat))
  end
end

local function setdebug(ns, on)
  if on then
    local gettime = ns.gettime
    for _, idx in ipairs(streammethods()) do
      if not debugged[idx] then
        local orig = { send = idx.send, receive = idx.receive }
        debugged[idx] = orig
        idx.send = debugwrap(orig.send, "send", gettime)
        idx.receive = debugwrap(orig.receive, "receive", gettime)
      end
    end
    ns._DEBUG = true
  else
    for idx, orig in pairs(debugged) do
      idx.send, idx.receive = orig.send, orig.receive
    end
    debugged = {}
    ns._DEBUG = nil
  end
end

-- install([opts]): returns the namespace that now stands for "socket".
function M.install(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error(("bad argument #1 to 'install' (table expected, got %s)"):format(type(opts)), 2)
  end
  opts = opts or {}
  local ns = require "tasksock.socket"
  if not installed then
    for name, mod in pairs(package.loaded) do
      if ismodule(name) then saved[name] = mod end
    end
    for name in pairs(saved) do package.loaded[name] = nil end
    nskeys = {}
    for k in pairs(ns) do nskeys[k] = true end
    package.loaded["socket"] = ns
    package.loaded["socket.core"] = ns
    local ok, unix = pcall(require, "tasksock.unix")
    if ok then package.loaded["socket.unix"] = unix end
    installed = true
  end
  setdebug(ns, opts.debug and true or false)
  return ns
end

-- uninstall(): LuaSocket (or whatever was loaded before) again.
function M.uninstall()
  if not installed then return end
  local ns = require "tasksock.socket"
  setdebug(ns, false)
  for name in pairs(package.loaded) do
    if ismodule(name) then package.loaded[name] = nil end
  end
  for name, mod in pairs(saved) do package.loaded[name] = mod end
  saved = {}
  for k in pairs(ns) do   -- what socket.http & co. hung on the namespace
    if not nskeys[k] then ns[k] = nil end
  end
  for _, t in ipairs { ns.sourcet, ns.sinkt } do
    for k in pairs(t) do
      if k:match("^http") then t[k] = nil end
    end
  end
  installed = false
end

function M.installed() return installed end

return M
