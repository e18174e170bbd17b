-- tasksock.unix: socket.unix in LuaSocket's shape (Debian's lua-socket):
-- a table that is also callable; unix() and unix.stream() (alias unix.tcp)
-- make a unixstream{master}. The streams are tcp.c's stream sockets over
-- libuv pipes: the same receive patterns, timeouts and select readiness.
-- (LuaSocket's unix.dgram / unix.udp are not provided.)
local C = require("tasksock.core")._unix

local M = {}
M.stream = C.stream
M.tcp = C.stream
M.__call = function(_, ...) return C.stream(...) end
setmetatable(M, M)

return M
