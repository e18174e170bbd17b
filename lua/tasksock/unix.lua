-- tasksock.unix: socket.unix in LuaSocket's shape (Debian's lua-socket):
-- a table that is also callable; unix() and unix.stream() (alias unix.tcp)
-- make a unixstream{master}. The streams are tcp.c's stream sockets over
-- libuv pipes: the same receive patterns, timeouts and select readiness.
-- unix.dgram() (alias unix.udp) makes a unixdgram{unconnected}: datagram
-- sockets of unixdgram.c (a non-blocking fd watched by a uv_poll_t).
local C = require("tasksock.core")._unix

local M = {}
M.stream = C.stream
M.tcp = C.stream
M.dgram = C.dgram
M.udp = C.dgram
M.__call = function(_, ...) return C.stream(...) end
setmetatable(M, M)

return M
