-- A multi-threaded server on one port. Each of THREADS OS threads
-- (ts.thread.start) has its own Lua state, its own loop and its own
-- listening socket, all bound to the same port with the "reuseport"
-- option: the kernel spreads incoming connections over them, and each
-- thread serves its share with tasklets. Client tasklets in the main
-- thread then load the server, and every answer says which thread served.
--
-- Options apply to a descriptor: socket.tcp() makes its descriptor only at
-- bind or connect (as LuaSocket's does), so a socket that needs
-- "reuseport" before bind is made with socket.tcp4() (or tcp6()).
--
--   lua5.4 examples/threads_reuseport.lua [threads [connections]]
local ts = require "tasksock"
local socket = require "tasksock.socket"

local THREADS = tonumber(arg and arg[1]) or 4
local CONNECTIONS = tonumber(arg and arg[2]) or 400

-- A thread's body. It runs in a fresh Lua state, so it may use globals
-- (require, string...) but no upvalue: what it needs comes as arguments
-- (copied), and the xchannels it gets are shared with the main thread.
local function serve(port, id, ready, stop)
  local tsk = require "tasksock"
  local sock = require "tasksock.socket"
  local server = assert(sock.tcp4())
  assert(server:setoption("reuseport", true))
  assert(server:bind("127.0.0.1", port))
  assert(server:listen(256))
  tsk.spawn(function()               -- closing `stop` ends this thread
    stop:receive()
    server:close()                   -- wakes accept with nil, "closed"
  end)
  ready:send(id)
  local served = 0
  while true do                      -- this thread's main chunk: accept
    local c = server:accept()
    if not c then break end
    served = served + 1
    tsk.spawn(function()
      c:settimeout(5)
      local line = c:receive()
      if line then c:send(("thread %d: %s\n"):format(id, line)) end
      c:close()
    end)
  end
  tsk.run()                          -- let the last connections finish
  return served
end

-- Reserve a port: bound (not listening) with reuseport, so the threads
-- may bind it too; closed once they all listen.
local placeholder = assert(socket.tcp4())
assert(placeholder:setoption("reuseport", true))
assert(placeholder:bind("127.0.0.1", 0))
local _, port = placeholder:getsockname()
port = tonumber(port)

local ready, stop = ts.xchannel(THREADS), ts.xchannel()
local threads = {}
for id = 1, THREADS do
  threads[id] = assert(ts.thread.start(serve, port, id, ready, stop))
end
for _ = 1, THREADS do assert(ready:receive(10), "a thread did not start") end
placeholder:close()
print(("%d threads listening on 127.0.0.1:%d"):format(THREADS, port))

-- The load: CONNECTIONS client tasklets at once, from the main thread.
local byclient = {}
local t0 = ts.now()
local clients = {}
for i = 1, CONNECTIONS do
  clients[i] = ts.spawn(function()
    local c = assert(socket.connect("127.0.0.1", port))
    c:settimeout(5)
    c:send("hello " .. i .. "\n")
    local answer = assert(c:receive())
    c:close()
    local who = assert(tonumber(answer:match("^thread (%d+): hello " .. i .. "$")), answer)
    byclient[who] = (byclient[who] or 0) + 1
  end)
end
for _, t in ipairs(clients) do assert(t:join()) end
local took = ts.now() - t0

stop:close()                         -- every thread's stop:receive() wakes
local total, busy = 0, 0
for id, th in ipairs(threads) do
  local ok, served = th:join(10)     -- blocks only this (main) chunk's loop
  assert(ok, served)
  print(("thread %d served %d connections"):format(id, served))
  assert(served == (byclient[id] or 0), "the clients counted otherwise")
  total = total + served
  if served > 0 then busy = busy + 1 end
end
print(("%d connections served by %d of %d threads in %.3f s")
  :format(total, busy, THREADS, took))
os.exit(total == CONNECTIONS and 0 or 1)
