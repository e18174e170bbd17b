-- An echo server: one tasklet accepts, one tasklet per connection echoes
-- each line back. Blocking calls (accept, receive, send) block only their
-- tasklet, so every connection is served at once.
--
--   lua5.4 examples/echo_server.lua [port [idle]]
--
-- Listens on 127.0.0.1 (port 0: any free port) and prints
-- "listening on 127.0.0.1:PORT" first. Ends by itself once no connection
-- has come for `idle` seconds (default 2) and every connection is done,
-- or at once on SIGINT/SIGTERM (ts.signal: a clean shutdown).
local ts = require "tasksock"
local socket = require "tasksock.socket"

local port = tonumber(arg and arg[1]) or 0
local idle = tonumber(arg and arg[2]) or 2

local server = assert(socket.bind("127.0.0.1", port, 128))
local _, actual = server:getsockname()
print("listening on 127.0.0.1:" .. actual)
io.stdout:flush()

local stats = { connections = 0, lines = 0 }

local function echo(client)
  client:settimeout(10)              -- a silent peer cannot hold us forever
  while true do
    local line, err = client:receive("*l")
    if not line then
      if err ~= "closed" then print("echo: " .. err) end
      break
    end
    stats.lines = stats.lines + 1
    client:send(line .. "\n")
  end
  client:close()
end

-- A signal handler runs in a tasklet of its own; closing the server wakes
-- the acceptor's accept with nil, "closed".
local function shutdown(name)
  print("server: " .. name .. ", shutting down")
  server:close()
end
ts.signal("SIGINT", shutdown)
ts.signal("SIGTERM", shutdown)

server:settimeout(idle)              -- accept gives nil, "timeout" when idle
local acceptor = ts.spawn(function()
  while true do
    local client, err = server:accept()
    if not client then
      if err ~= "timeout" and err ~= "closed" then print("accept: " .. err) end
      break
    end
    stats.connections = stats.connections + 1
    ts.spawn(echo, client)
  end
  server:close()
end)
acceptor.name = "acceptor"

acceptor:join()                      -- the main chunk drives the loop meanwhile
ts.signal("SIGINT", nil)             -- stop watching, so ts.run can end
ts.signal("SIGTERM", nil)
ts.run()                             -- the connections still being served
print(("server done: %d connections, %d lines echoed"):format(stats.connections, stats.lines))
