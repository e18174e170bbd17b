-- tasksock.socket: LuaSocket's namespace (require "socket") over tasksock,
-- where every call that would block suspends only the calling tasklet (or,
-- in the main chunk, runs the scheduler until it completes).
--
-- The C core gives the constructors (core._socket) and socket.dns
-- (core.dns); the rest of LuaSocket's namespace is Lua, as in LuaSocket.
local core = require "tasksock.core"

local C = core._socket
local M = {}

M._VERSION = "LuaSocket 3.0.0"   -- LuaSocket's exact value: scripts test it
M._SETSIZE = C._setsize   -- the fd limit: select has no FD_SETSIZE
M._DATAGRAMSIZE = 8192
M._SOCKETINVALID = -1     -- what getfd gives for a socket with no descriptor
M.BLOCKSIZE = 2048

-- LuaSocket's module unloader (it cleans up Winsock); nothing to do here
function M.__unload() end

-- TCP ------------------------------------------------------------------------

M.tcp = C.tcp
M.tcp4 = C.tcp4
M.tcp6 = C.tcp6

local families = { unspec = M.tcp, inet = M.tcp4, inet6 = M.tcp6 }

-- connect(address, port[, laddress[, lport[, family]]]): a client or nil, err.
-- As in LuaSocket, family picks the local address only: without laddress
-- the connection may use any family (connect6("127.0.0.1", p) connects
-- over IPv4), with it the connection uses the bound address's family.
-- a value's metatable, past a __metatable field (as C code sees it)
local rawgetmt = debug and debug.getmetatable or getmetatable

-- LuaSocket's connect is C: its arguments are checked as luaL_checkstring,
-- luaL_optstring and luaL_checkoption do, errors pointing at the caller.
local function argerror(n, msg, level)  -- level: connect's, seen from here
  local info = debug and debug.getinfo(level, "n")
  -- no name (called by pcall, say): Lua looks for it in package.loaded
  local name = info and info.name or "socket.connect"
  error(("bad argument #%d to '%s' (%s)"):format(n, name, msg), level + 1)
end

local function checkstring(n, v, nargs, optional)
  local t = type(v)
  if t == "string" or t == "number" or (optional and v == nil) then return end
  local mt = rawgetmt(v)
  local got = n > nargs and "no value"
    or type(mt) == "table" and type(mt.__name) == "string" and mt.__name or t
  argerror(n, t == "nil" and n <= nargs and "string expected, got nil"
    or "string expected, got " .. got, 3)
end

function M.connect(...)
  local address, port, laddress, lport, family = ...
  local nargs = select("#", ...)
  checkstring(1, address, nargs)
  checkstring(2, port, nargs)
  checkstring(3, laddress, nargs, true)
  checkstring(4, lport, nargs, true)
  checkstring(5, family, nargs, true)
  local new = families[family == nil and "unspec" or tostring(family)]
  if not new then argerror(5, ("invalid option '%s'"):format(tostring(family)), 2) end
  if laddress == nil then new = M.tcp end
  local sock, err = new()
  if not sock then return nil, err end
  local ok
  if laddress ~= nil then
    ok, err = sock:bind(laddress, lport or 0)
    if not ok then
      sock:close()
      return nil, err
    end
  end
  ok, err = sock:connect(address, port)
  if not ok then
    sock:close()
    return nil, err
  end
  return sock
end

-- (not tail calls: connect's argument errors point here, as LuaSocket's
-- point into its socket.lua)
function M.connect4(address, port, laddress, lport)
  local r = table.pack(M.connect(address, port, laddress, lport, "inet"))
  return table.unpack(r, 1, r.n)
end

function M.connect6(address, port, laddress, lport)
  local r = table.pack(M.connect(address, port, laddress, lport, "inet6"))
  return table.unpack(r, 1, r.n)
end

-- bind(host, port[, backlog]): a listening server (reuseaddr set) or nil, err.
-- Each resolved address is tried in turn, as LuaSocket does.
function M.bind(host, port, backlog)
  if host == "*" then host = "0.0.0.0" end
  local list, err = core.dns.getaddrinfo(host)
  if not list then return nil, err end
  err = "no info on address"
  for _, alt in ipairs(list) do
    local sock, res
    sock, err = (alt.family == "inet" and M.tcp4 or M.tcp6)()
    if not sock then return nil, err end
    sock:setoption("reuseaddr", true)
    res, err = sock:bind(alt.addr, port)
    if res then
      res, err = sock:listen(backlog)
      if res then return sock end
    end
    sock:close()
  end
  return nil, err
end

-- UDP ------------------------------------------------------------------------

M.udp = C.udp
M.udp4 = C.udp4
M.udp6 = C.udp6

-- Unix domain sockets: added by unix.c's author --------------------------------

-- DNS ------------------------------------------------------------------------

M.dns = core.dns

-- select: one wait on any number of objects (select.c) ------------------------

M.select = C.select

-- time -----------------------------------------------------------------------

M.sleep = core.sleep     -- blocks only the calling tasklet
M.gettime = C.gettime    -- wall clock, seconds as a float

-- helpers (LuaSocket's pure-Lua layer, written anew) -------------------------

-- skip(d, ...): the arguments after the first d, as LuaSocket's C skip
-- computes them (an integer d, taken as a C int; d = -1 keeps d itself).
function M.skip(...)
  local d = ...
  local n = math.tointeger(tonumber(d))
  if n == nil then
    error(("bad argument #1 to 'skip' (%s)"):format(tonumber(d) and
          "number has no integer representation" or "number expected, got " ..
          (select("#", ...) == 0 and "no value" or type(d))), 2)
  end
  n = (n + 2 ^ 31) % 2 ^ 32 - 2 ^ 31  -- the int it becomes in C
  local total = select("#", ...)       -- d and the rest
  local keep = math.min(total, total - n - 1)
  if keep <= 0 then return end
  return select(total - keep + 1, ...)
end

-- try/newtry/protect, as LuaSocket's except.c: an error raised by a try is
-- a table { err } whose metatable is closed (__metatable = false, no
-- __tostring: uncaught, Lua reports "error object is a table value");
-- protect (C, one frame as LuaSocket's) turns it back into nil, err and
-- lets other errors through.
local wrapper = { __metatable = false }

local function iscallable(f)
  if type(f) == "function" then return true end
  local mt = rawgetmt(f)
  return type(mt) == "table" and mt.__call ~= nil
end

function M.newtry(finalizer)
  return function(ok, ...)
    if ok then return ok, ... end
    if finalizer ~= nil then
      -- called as LuaSocket's C code calls it: nothing callable, its words
      if not iscallable(finalizer) then
        error("attempt to call a " .. type(finalizer) .. " value", 0)
      end
      finalizer()
    end
    error(setmetatable({ (...) }, wrapper), 0)
  end
end

M.try = M.newtry()

M.protect = C._protector(wrapper)

function M.choose(table)
  return function(name, opt1, opt2)
    if type(name) ~= "string" then
      name, opt1, opt2 = "default", name, opt1
    end
    local f = table[name or "nil"]
    if not f then error("unknown key (" .. tostring(name) .. ")", 3) end
    return f(opt1, opt2)
  end
end

local sourcet, sinkt = {}, {}
M.sourcet, M.sinkt = sourcet, sinkt

-- A callable object that select can also use (getfd, dirty).
local function callable(sock, call)
  return setmetatable({
    getfd = function() return sock:getfd() end,
    dirty = function() return sock:dirty() end,
  }, { __call = call, ["tasksock.socket"] = sock })  -- select looks through it
end

sinkt["close-when-done"] = function(sock)
  return callable(sock, function(_, chunk)
    if chunk then return sock:send(chunk) end
    sock:close()
    return 1
  end)
end

sinkt["keep-open"] = function(sock)
  return callable(sock, function(_, chunk)
    if chunk then return sock:send(chunk) end
    return 1
  end)
end

sinkt["default"] = sinkt["keep-open"]
M.sink = M.choose(sinkt)

sourcet["by-length"] = function(sock, length)
  return callable(sock, function()
    if length <= 0 then return nil end
    local chunk, err = sock:receive(math.min(M.BLOCKSIZE, length))
    if err then return nil, err end
    length = length - #chunk
    return chunk
  end)
end

sourcet["until-closed"] = function(sock)
  local done = false
  return callable(sock, function()
    if done then return nil end
    local chunk, err, partial = sock:receive(M.BLOCKSIZE)
    if not err then return chunk end
    if err == "closed" then
      sock:close()
      done = true
      return partial
    end
    return nil, err
  end)
end

sourcet["default"] = sourcet["until-closed"]
M.source = M.choose(sourcet)

return M
