-- spec/helper/luasocket_diff.lua: run one case against Debian's LuaSocket and
-- against tasksock.socket, and compare what they return.
--
-- A case is function(socket, note) that drives the sockets of the namespace
-- it is given and calls note(...) with any results worth comparing; the
-- helper records every noted value as its type, its number subtype
-- (integer/float), and its value (for userdata: the class in tostring;
-- values that differ between runs, like ports, must not be noted).
local ts = require "tasksock"

local H = {}
H.luasocket = require "socket"
H.tasksock = require "tasksock.socket"

local function norm(v)
  local t = type(v)
  if t == "number" then return math.type(v) .. ":" .. tostring(v) end
  if t == "string" then return "string:" .. v end
  if t == "userdata" then return "userdata:" .. (tostring(v):match("^([^:]*):") or "?") end
  if t == "table" or t == "function" or t == "thread" then return t end
  return t .. ":" .. tostring(v)
end

-- Pack the results of f(...) run under pcall, normalised; errors keep only
-- their message without the position and the function name LuaSocket or
-- Lua give (both say "bad argument #n to '?' (...)" or name the method).
local function record(list, ...)
  local n = select("#", ...)
  local r = {}
  for i = 1, n do
    local v = select(i, ...)
    r[i] = norm(v)
  end
  r.n = n
  list[#list + 1] = r
end

function H.run(socket, case)
  local list = {}
  local ok, err = pcall(case, socket, function(...) record(list, ...) end)
  if not ok then
    record(list, "raised", (tostring(err):gsub("^[^:]*:%d+: ", ""):gsub("to '[^']*'", "to '?'")))
  end
  return list
end

-- Run in a tasklet (the scheduler runs until it ends).
function H.runtasklet(socket, case)
  local res
  ts.spawn(function() res = H.run(socket, case) end)
  ts.run()
  return res
end

-- Results for LuaSocket, tasksock in the main chunk, tasksock in a tasklet.
function H.both(case)
  return H.run(H.luasocket, case), H.run(H.tasksock, case), H.runtasklet(H.tasksock, case)
end

-- A port on 127.0.0.1 where nothing listens: connecting to it is refused.
function H.closedport(socket)
  local srv = assert(socket.bind("127.0.0.1", 0))
  local _, port = srv:getsockname()
  srv:close()
  return port
end

-- A connected pair (client, server side) and the server, on 127.0.0.1.
function H.pair(socket)
  local srv = assert(socket.bind("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local c = assert(socket.connect("127.0.0.1", port))
  local a = assert(srv:accept())
  return c, a, srv, tonumber(port)
end

-- Open file descriptors of this process.
function H.nfds()
  local n = 0
  local p = io.popen("ls /proc/" .. (H.pid() or "self") .. "/fd")
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

function H.pid()
  local f = io.open("/proc/self/stat")
  if not f then return nil end
  local pid = f:read("*l"):match("^(%d+)")
  f:close()
  return pid
end

return H
