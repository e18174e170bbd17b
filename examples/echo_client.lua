-- Echo clients: many tasklets, each with its own connection, talk to the
-- echo server at once and check every answer.
--
--   lua5.4 examples/echo_client.lua [port [clients [lines]]]
--
-- With a port, talks to an echo server already listening on 127.0.0.1
-- (examples/echo_server.lua). Without one (or with port 0), starts
-- examples/echo_server.lua in a second process first, reads its port from
-- its first line, and waits for it to end at the end.
local ts = require "tasksock"
local socket = require "tasksock.socket"

local port = tonumber(arg and arg[1]) or 0
local CLIENTS = tonumber(arg and arg[2]) or 50
local LINES = tonumber(arg and arg[3]) or 20

-- No port: run the server ourselves, with a short idle time.
local serverproc
if port == 0 then
  local here = (arg and arg[0] or ""):match("^(.*[/\\])") or ""
  local lua = arg and arg[-1] or "lua5.4"
  serverproc = assert(io.popen(("%q %q 0 0.5"):format(lua, here .. "echo_server.lua")))
  local first = serverproc:read("l") or ""
  port = assert(tonumber(first:match(":(%d+)$")), "the server said: " .. first)
end

local function client(id)
  local c = assert(socket.connect("127.0.0.1", port))
  c:settimeout(5)
  local good = 0
  for i = 1, LINES do
    local line = ("client %d line %d %s"):format(id, i, ("x"):rep(i))
    assert(c:send(line .. "\n"))
    local back, err = c:receive("*l")
    if back == line then good = good + 1
    else print(("client %d: expected %q, got %s"):format(id, line, back or err)) end
  end
  c:close()
  return good
end

local t0 = ts.now()
local tasklets = {}
for id = 1, CLIENTS do tasklets[id] = ts.spawn(client, id) end

local total, failed = 0, 0
for _, t in ipairs(tasklets) do       -- join drives the loop from the main chunk
  local ok, good = t:join()
  if ok then total = total + good
  else failed = failed + 1 ; print("a client failed: " .. tostring(good)) end
end
print(("%d clients x %d lines: %d echoed right, %d clients failed, in %.3f s")
  :format(CLIENTS, LINES, total, failed, ts.now() - t0))

if serverproc then
  io.write(serverproc:read("a"))      -- the server's report, once it ends
  serverproc:close()
end
os.exit(failed == 0 and total == CLIENTS * LINES and 0 or 1)
