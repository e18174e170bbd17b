-- echo_tasksock.lua: TCP echo server on tasksock, one tasklet per connection,
-- written as plain blocking LuaSocket code.
--
--   lua5.4 bench/echo_tasksock.lua PORT
--
-- Each connection tasklet loops receiveany(N) (1..N bytes as soon as any
-- are there) and send. TCP_NODELAY is set on accepted sockets, as the other
-- servers of the benchmark do. Prints READY once listening; exits on
-- SIGTERM/SIGINT.
local ts = require "tasksock"
local socket = require "tasksock.socket"

local port = tonumber(arg[1])
if not port then
  io.stderr:write("usage: lua5.4 echo_tasksock.lua PORT\n")
  os.exit(2)
end

local CHUNK = 65536

local function serve(con)
  con:setoption("tcp-nodelay", true)
  while true do
    local data = con:receiveany(CHUNK)
    if not data or not con:send(data) then break end
  end
  con:close()
end

local server, err = socket.bind("127.0.0.1", port, 1024)
if not server then
  io.stderr:write("echo_tasksock: bind: ", tostring(err), "\n")
  os.exit(1)
end

for _, name in ipairs { "SIGTERM", "SIGINT" } do
  ts.signal(name, function() os.exit(0) end)
end

ts.spawn(function()
  while true do
    local con = server:accept()
    if con then ts.spawn(serve, con) end
  end
end)

io.stdout:write("READY\n")
io.stdout:flush()
ts.run()
