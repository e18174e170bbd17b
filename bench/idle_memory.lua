-- Memory per idle connection: N connections, each served by a tasklet
-- blocked in receive("*l"), measured as the server process's RSS delta.
-- The clients live in another process (Debian's LuaSocket), so only the
-- server side is counted.
--
--   ulimit -n 30000; lua5.4 bench/idle_memory.lua [N] [hello] [shared]
--
-- N is bounded by the descriptor limit (ulimit -n): with fewer than N + 64
-- it runs as many as fit and says so. 100,000 need a limit above that,
-- which takes root with CAP_SYS_RESOURCE (ulimit -n 110000).
--
-- With "hello", each client first sends one line, which its tasklet
-- receives before it blocks: the cost of a connection that has talked.
-- Each tasklet runs a closure of its own over its socket, as most servers
-- are written; with "shared", every tasklet runs the same function and
-- gets its socket as spawn's argument (ts.spawn(serve, c)), which spares
-- the closure and its upvalue.
local ts = require "tasksock"
local socket = require "tasksock.socket"

local ASKED = tonumber(arg[1]) or 10000
local function fdlimit()
  local p = io.popen("ulimit -n")
  local n = tonumber(p:read("a"):match("%d+"))
  p:close()
  return n  -- nil: unlimited
end
local LIMIT = fdlimit()
local N = LIMIT and math.min(ASKED, LIMIT - 64) or ASKED
if N < ASKED then
  print(string.format("%d connections asked; %d fit under the descriptor limit of %d " ..
    "(ulimit -n; past the hard limit it takes CAP_SYS_RESOURCE)", ASKED, N, LIMIT))
end
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

-- The connections in groups of at most 20,000, each group to its own
-- listening address (127.0.0.1, .2, ...) from its own client process:
-- neither the client's descriptor limit nor the ephemeral ports (about
-- 28,000 per destination) stop them. (IDLE_PER=n: groups of n.)
local PER = math.min(tonumber(os.getenv("IDLE_PER")) or 20000, LIMIT and LIMIT - 64 or math.huge)
local groups, left = {}, N
while left > 0 do
  local n = math.min(PER, left)
  local server = assert(socket.bind("127.0.0." .. (#groups + 1), 0, 4096))
  groups[#groups + 1] = { n = n, server = server, port = select(2, server:getsockname()) }
  left = left - n
end

-- a client process: n connections to one address, held open until its
-- stdin closes
local client = [[
local socket = require "socket"
local n, host, port = tonumber(arg[1]), arg[2], tonumber(arg[3])
local held = {}
for i = 1, n do
  local c = assert(socket.connect(host, port))
  if arg[4] == "hello" then assert(c:send("hello\n")) end
  held[i] = c
end
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
local acceptors = {}
for i, g in ipairs(groups) do
  acceptors[i] = ts.spawn(function()
    for _ = 1, g.n do
      local c = assert(g.server:accept())
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
end

-- start the clients with pipes we can close to let them exit
local procs = {}
for i, g in ipairs(groups) do
  procs[i] = assert(io.popen(string.format("lua5.4 %s %d 127.0.0.%d %d %s > /dev/null",
    path, g.n, i, g.port, HELLO and "hello" or ""), "w"))
end
-- all blocked; a client that failed (it says why on stderr) stalls this
local seen, stalled = 0, 0
while blocked < N do
  ts.sleep(0.05)
  stalled = blocked == seen and stalled + 0.05 or 0
  seen = blocked
  if stalled > 30 then error(("stalled at %d of %d connections"):format(blocked, N)) end
end
for _, a in ipairs(acceptors) do a:join() end
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
for _, proc in ipairs(procs) do proc:close() end
os.remove(path)
os.exit(0)
