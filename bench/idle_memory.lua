-- Memory per idle connection: N connections, each served by a tasklet
-- blocked in receive("*l"), measured as the server process's RSS delta.
-- The clients live in another process (Debian's LuaSocket), so only the
-- server side is counted.
--
--   ulimit -n 30000; lua5.4 bench/idle_memory.lua [N] [hello] [shared]
--
-- With "hello", each client first sends one line, which its tasklet
-- receives before it blocks: the cost of a connection that has talked.
-- Each tasklet runs a closure of its own over its socket, as most servers
-- are written; with "shared", every tasklet runs the same function and
-- gets its socket as spawn's argument (ts.spawn(serve, c)), which spares
-- the closure and its upvalue.
local ts = require "tasksock"
local socket = require "tasksock.socket"

local N = tonumber(arg[1]) or 10000
local HELLO, SHARED = false, false
for i = 2, #arg do
  if arg[i] == "hello" then HELLO = true elseif arg[i] == "shared" then SHARED = true end
end

local function rss()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmRSS:%s+(%d+)")
    if kb then return tonumber(kb) * 1024 end
  end
end

local server = assert(socket.bind("127.0.0.1", 0, 4096))
local _, port = server:getsockname()

-- the client process: N connections held open until its stdin closes
local client = [[
local socket = require "socket"
local N, port = tonumber(arg[1]), tonumber(arg[2])
local held = {}
for i = 1, N do
  local c = assert(socket.connect("127.0.0.1", port))
  if arg[3] == "hello" then assert(c:send("hello\n")) end
  held[i] = c
end
io.stdout:write("CONNECTED\n"); io.stdout:flush()
io.read("a")
]]
local path = os.tmpname()
local f = assert(io.open(path, "w")); f:write(client); f:close()

local blocked = 0
collectgarbage(); collectgarbage()
local before, heap0 = rss(), collectgarbage("count")
-- The two ways to write it share no code on purpose: a closure calling
-- serve would block one call deeper (one more CallInfo per connection).
local function serve(c)
  if HELLO then assert(c:receive("*l") == "hello") end
  blocked = blocked + 1
  c:receive("*l")  -- never answered: the client sends nothing more
  c:close()
end
local acceptor = ts.spawn(function()
  for _ = 1, N do
    local c = assert(server:accept())
    if SHARED then
      ts.spawn(serve, c)
    else
      ts.spawn(function()
        if HELLO then assert(c:receive("*l") == "hello") end
        blocked = blocked + 1
        c:receive("*l")
        c:close()
      end)
    end
  end
end)

-- start the client with a pipe we can close to let it exit
local proc = assert(io.popen(string.format("lua5.4 %s %d %d %s > /dev/null", path, N, port,
  HELLO and "hello" or ""), "w"))
while acceptor:status() ~= "dead" or blocked < N do ts.sleep(0.05) end
collectgarbage(); collectgarbage()
local after, heap1 = rss(), collectgarbage("count")
print(string.format("%d idle connections%s%s, each with a tasklet blocked in receive: " ..
  "%.0f bytes per connection (RSS delta %.1f MiB; Lua heap %.0f bytes per connection)",
  N, HELLO and " (each received one line first)" or "",
  SHARED and " (one function for all, the socket as spawn's argument)" or "", (after - before) / N,
  (after - before) / 2^20, (heap1 - heap0) * 1024 / N))

-- The loop must not burn CPU while everything waits: the process's CPU
-- time (os.clock: user + system) over an idle period with all of them open.
local IDLE = tonumber(os.getenv("IDLE_SECONDS")) or 5
local cpu0 = os.clock()
ts.sleep(IDLE)
local cpu = os.clock() - cpu0
print(string.format("idle for %g s with them open: %.1f ms of CPU (%.2f%% of one core)",
  IDLE, cpu * 1e3, cpu / IDLE * 100))
proc:close()
os.remove(path)
os.exit(0)
