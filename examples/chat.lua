-- A chat server and its users in one program, over loopback.
--
-- The server has one tasklet per connection reading lines, a hub tasklet
-- that broadcasts, and one writer tasklet per connection. They talk only
-- through channels: readers send to the hub's inbox; the hub copies each
-- message into every connection's outbox (a channel with a capacity, sent
-- to without waiting: a user too slow to keep up loses messages instead of
-- slowing everyone down); each writer drains its outbox onto its socket.
--
-- Protocol, one line each: "NICK name", "SAY text", "QUIT". The server
-- sends "* name joined", "name: text", "* name left", and "BYE".
--
--   lua5.4 examples/chat.lua [users [messages]]
local ts = require "tasksock"
local socket = require "tasksock.socket"

local USERS = tonumber(arg and arg[1]) or 5
local MESSAGES = tonumber(arg and arg[2]) or 10
local OUTBOX = 256                   -- lines a connection may lag behind

-- The server -------------------------------------------------------------

local server = assert(socket.bind("127.0.0.1", 0, 64))
local _, port = server:getsockname()
print("chat server on 127.0.0.1:" .. port)

local inbox = ts.channel(64)         -- {from = conn, text = line} for the hub
local conns = {}                     -- conn -> true, for the hub
local dropped = 0

-- The hub: the one place that knows every connection.
local hub = ts.spawn(function()
  while true do
    local msg = inbox:receive()
    if msg == nil then break end     -- the inbox was closed: shutting down
    if msg.join then conns[msg.join] = true end
    if msg.leave then conns[msg.leave] = nil ; msg.leave.outbox:close() end
    if msg.text then
      for conn in pairs(conns) do
        if conn.outbox:send(msg.text, 0) == nil then dropped = dropped + 1 end
      end
    end
  end
end)
hub.name = "hub"

local function writer(conn)
  while true do
    local line = conn.outbox:receive()
    if line == nil then break end    -- closed, and every buffered line sent
    if not conn.sock:send(line .. "\n") then break end
  end
  conn.sock:send("BYE\n")
  conn.sock:close()
end

local function reader(conn)
  local sock, nick = conn.sock, nil
  sock:settimeout(10)
  while true do
    local line = sock:receive()
    if line == nil or line == "QUIT" then break end
    local cmd, rest = line:match("^(%u+) (.*)$")
    if cmd == "NICK" and not nick then
      nick = rest
      inbox:send({ join = conn, text = "* " .. nick .. " joined" })
    elseif cmd == "SAY" and nick then
      inbox:send({ text = nick .. ": " .. rest })
    end
  end
  inbox:send({ leave = conn, text = nick and "* " .. nick .. " left" })
end

local acceptor = ts.spawn(function()
  while true do
    local sock = server:accept()
    if not sock then break end       -- the server socket was closed
    local conn = { sock = sock, outbox = ts.channel(OUTBOX) }
    ts.spawn(writer, conn).name = "writer"
    ts.spawn(reader, conn).name = "reader"
  end
end)
acceptor.name = "acceptor"

-- The users --------------------------------------------------------------

local ready = ts.channel()           -- a rendezvous: "I have joined"
local go = ts.channel(USERS)         -- everyone has joined: talk

local function user(name)
  local c = assert(socket.connect("127.0.0.1", port))
  c:settimeout(10)
  c:send("NICK " .. name .. "\n")
  -- wait until the server confirms our own join
  repeat local line = assert(c:receive()) until line == "* " .. name .. " joined"
  ready:send(name)
  go:receive()
  -- talk, while a tasklet of our own listens (one socket, two tasklets:
  -- one receives, the other sends)
  local heard = {}
  local listener = ts.spawn(function()
    while true do
      local line = c:receive()
      if line == nil or line == "BYE" then return end
      local who = line:match("^(%w+): ")
      if who and who ~= name then heard[who] = (heard[who] or 0) + 1 end
    end
  end)
  for i = 1, MESSAGES do
    c:send(("SAY message %d from %s\n"):format(i, name))
    ts.sleep(0.001 * math.random(0, 3))   -- interleave with the others
  end
  -- wait until we heard everyone else's last message, then leave
  local deadline = ts.now() + 5
  local function done()
    for j = 1, USERS do
      local other = "user" .. j
      if other ~= name and (heard[other] or 0) < MESSAGES then return false end
    end
    return true
  end
  while not done() and ts.now() < deadline do ts.sleep(0.005) end
  c:send("QUIT\n")
  listener:join()
  c:close()
  local total = 0
  for _, n in pairs(heard) do total = total + n end
  return total
end

local t0 = ts.now()
local users = {}
for i = 1, USERS do users[i] = ts.spawn(user, "user" .. i) end
for _ = 1, USERS do ready:receive() end
for _ = 1, USERS do go:send(true) end

local failed = 0
for i, t in ipairs(users) do
  local ok, heard = t:join()
  if not ok then failed = failed + 1 ; print("user" .. i .. " failed: " .. tostring(heard))
  else
    print(("user%d heard %d messages from %d others"):format(i, heard, USERS - 1))
    if heard ~= MESSAGES * (USERS - 1) then failed = failed + 1 end
  end
end

server:close()                       -- the acceptor ends
inbox:close()                        -- the hub ends once the inbox is empty
ts.run()                             -- every writer and reader ends too
print(("%d users, %d messages each, %d dropped, in %.3f s: %s")
  :format(USERS, MESSAGES, dropped, ts.now() - t0, failed == 0 and "all delivered" or "FAILED"))
os.exit(failed == 0 and 0 or 1)
