-- The main demo: one process, one thread, one libuv loop. A line-protocol
-- server and 200 client tasklets talk over loopback at once, all written as
-- plain blocking LuaSocket code; every blocking call blocks only its tasklet.
--
--   make demo        (or: lua5.4 examples/demo.lua after `make env`)
local ts = require "tasksock"
local socket = require "tasksock.socket"

local CLIENTS = tonumber(arg and arg[1]) or 200
local REQUESTS = tonumber(arg and arg[2]) or 20

-- The server: a tasklet accepting, a tasklet per connection. Commands:
-- "UPPER text", "ADD a b", "SLEEP s" (a slow request: other clients go on),
-- "QUIT".
local server = assert(socket.bind("127.0.0.1", 0, 1024))  -- backlog: 200 connect at once
local _, port = server:getsockname()
print(string.format("server listening on 127.0.0.1:%s", port))

local stats = {connections = 0, requests = 0}

local function serve(client)
  client:settimeout(5)
  while true do
    local line, err = client:receive("*l")
    if not line then
      if err ~= "closed" then print("server: receive failed: " .. err) end
      break
    end
    stats.requests = stats.requests + 1
    local cmd, rest = line:match("^(%u+)%s*(.*)$")
    if cmd == "UPPER" then
      client:send(rest:upper() .. "\n")
    elseif cmd == "ADD" then
      local a, b = rest:match("^(%-?%d+)%s+(%-?%d+)$")
      client:send((a and tostring(math.tointeger(a + b)) or "ERR bad numbers") .. "\n")
    elseif cmd == "SLEEP" then
      ts.sleep(tonumber(rest) or 0)
      client:send("SLEPT\n")
    elseif cmd == "QUIT" then
      client:send("BYE\n")
      break
    else
      client:send("ERR unknown command\n")
    end
  end
  client:close()
end

local acceptor = ts.spawn(function()
  while true do
    local client, err = server:accept()
    if not client then
      if err == "closed" then return end
      print("server: accept failed: " .. tostring(err))
    else
      stats.connections = stats.connections + 1
      ts.spawn(serve, client)
    end
  end
end)
acceptor.name = "acceptor"

-- The clients: each connects, sends a mix of requests, checks each answer.
local function client(id)
  local c = assert(socket.connect("127.0.0.1", port))
  c:settimeout(5)
  local ok = 0
  for i = 1, REQUESTS do
    local req, want
    if i % 3 == 0 then
      req, want = string.format("ADD %d %d", id, i), tostring(id + i)
    elseif i == REQUESTS // 2 then
      req, want = "SLEEP 0.05", "SLEPT"
    else
      req, want = "UPPER client " .. id .. " request " .. i, ("client " .. id .. " request " .. i):upper()
    end
    assert(c:send(req .. "\n"))
    local answer = assert(c:receive("*l"))
    if answer == want then ok = ok + 1 else print("client " .. id .. ": wrong answer " .. answer) end
  end
  assert(c:send("QUIT\n"))
  assert(c:receive("*l") == "BYE")
  c:close()
  return ok
end

local t0 = ts.now()
local clients = {}
for id = 1, CLIENTS do
  clients[id] = ts.spawn(client, id)
  clients[id].name = "client-" .. id
end

-- Join them all from the main chunk: joining drives the scheduler.
local good, failed = 0, 0
for _, t in ipairs(clients) do
  local ok, n = t:join()
  if ok and n == REQUESTS then good = good + 1 else failed = failed + 1 end
end
local elapsed = ts.now() - t0

server:close()  -- wakes the acceptor with "closed"
ts.run()

print(string.format("%d clients x %d requests: %d clients all answers right, %d failed",
  CLIENTS, REQUESTS, good, failed))
print(string.format("server saw %d connections and %d requests in %.3f s (%.0f requests/s)",
  stats.connections, stats.requests, elapsed, stats.requests / elapsed))
print(string.format("every client slept 50 ms once; run one after another that alone would take %.1f s",
  CLIENTS * 0.05))
local s = ts.stats()
print(string.format("tasklets spawned %d, context switches %d, bytes in %d, out %d",
  s.spawned, s.switches, s.bytesin, s.bytesout))
os.exit(failed == 0 and 0 or 1)
