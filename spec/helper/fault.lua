-- spec/helper/fault.lua: what the fault, stress, GC/kill and API-walk specs
-- share: a tasklet runner with a watchdog, counts of what the process holds
-- (descriptors, Lua memory, RSS, sockets, tasklets), and the TASKSOCK_SLOW
-- scale (set under valgrind and ThreadSanitizer, where everything runs
-- 20-50 times slower).
local ts = require "tasksock"
local assert = require "luassert"

local F = {}

F.SLOW = os.getenv("TASKSOCK_SLOW") ~= nil
-- AddressSanitizer is preloaded by `make asan`: its allocator keeps freed
-- memory in quarantine, so RSS says nothing there.
F.ASAN = (os.getenv("LD_PRELOAD") or ""):find("asan") ~= nil

-- n normally, n / div (at least 1) under TASKSOCK_SLOW.
function F.scale(n, div)
  if not F.SLOW then return n end
  return math.max(1, n // (div or 20))
end

-- Seconds a bound on waiting should allow (longer under TASKSOCK_SLOW).
function F.time(s)
  return F.SLOW and s * 10 or s
end

-- Run body in a tasklet with a watchdog: the test fails if it does not end
-- within limit seconds (it is killed). Tasklets the body left alive are
-- killed once it ended (so a failed test cannot keep ts.run going), and
-- fail a test that otherwise passed.
function F.run(body, limit)
  limit = F.time(limit or 10)
  local old = {}
  for _, e in ipairs(ts.tasklets()) do old[e.tasklet] = true end
  local t = ts.spawn(body)
  local dog = ts.spawn(function()
    ts.sleep(limit)
    t:kill("watchdog: the test took longer than " .. limit .. " s")
  end)
  local strays = {}
  ts.spawn(function()
    t:join()
    dog:kill("done")
    local me = ts.current()
    for _, e in ipairs(ts.tasklets()) do
      if not old[e.tasklet] and e.tasklet ~= me and e.tasklet ~= dog then
        strays[#strays + 1] = tostring(e.tasklet) .. " waiting on " .. tostring(e.waiting)
        e.tasklet:kill("the test is over")
      end
    end
  end)
  ts.run()
  local ok, err = t:join()
  assert(ok, err)
  assert(#strays == 0, "tasklets left running: " .. table.concat(strays, ", "))
end

-- Seed math.random for a randomized test and print the seed:
-- TASKSOCK_SEED=n in the environment repeats a run.
function F.seed(what)
  local seed = tonumber(os.getenv("TASKSOCK_SEED"))
  if not seed then
    seed = os.time() * 1000 + math.floor(os.clock() * 1000) % 1000
  end
  print(("\n  %s: seed %d (TASKSOCK_SEED=%d repeats it)"):format(what, seed, seed))
  math.randomseed(seed)
  return seed
end

-- Call f(...) in a tasklet of its own and wait at most limit seconds for
-- it: true, its results... | false, its error | nil, "hung" (it is killed).
function F.within(limit, f, ...)
  local t = ts.spawn(f, ...)
  local deadline = ts.now() + limit
  ts.yield()  -- most calls are done by then
  while t:status() ~= "dead" and ts.now() < deadline do ts.sleep(0.002) end
  if t:status() ~= "dead" then
    t:kill("hung")
    t:join()
    return nil, "hung"
  end
  return t:join()
end

local pid
local function mypid()
  if not pid then
    local f = assert(io.open("/proc/self/stat"))
    pid = f:read("*l"):match("^(%d+)")
    f:close()
  end
  return pid
end

-- Open descriptors of this process.
function F.nfds()
  local n = 0
  local p = io.popen("ls /proc/" .. mypid() .. "/fd")
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

-- The open descriptors: fd number -> what it is (for messages).
function F.fdlist()
  local list = {}
  local p = io.popen("ls -l /proc/" .. mypid() .. "/fd")
  for line in p:lines() do
    local fd, what = line:match("(%d+) %-> (.*)$")
    if fd then list[fd] = what end
  end
  p:close()
  return list
end

-- Open descriptors once two counts 5 ms apart agree (a thread of libuv's
-- pool may hold one for a moment: getaddrinfo reads /etc/hosts, tries nscd).
function F.stablefds()
  local n = F.nfds()
  for _ = 1, 40 do
    ts.sleep(0.005)
    local m = F.nfds()
    if m == n then return n end
    n = m
  end
  return n
end

-- Wait up to limit seconds (0.5) for the descriptor count to be n; the
-- count last seen.
function F.waitfds(n, limit)
  local deadline = ts.now() + (limit or 0.5)
  local m = F.nfds()
  while m ~= n and ts.now() < deadline do
    ts.sleep(0.005)
    m = F.nfds()
  end
  return m
end

-- Resident set size in KiB (nil where /proc is missing).
function F.rss()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local kb
  for line in f:lines() do
    kb = kb or tonumber(line:match("^VmRSS:%s*(%d+)"))
  end
  f:close()
  return kb
end

-- Collect everything, and let libuv run the close callbacks of what the
-- collection closed (only from inside a tasklet, or from the main chunk
-- when no loop runs).
function F.settle()
  for _ = 1, 2 do
    collectgarbage()
    collectgarbage()
    ts.sleep(0.005)
  end
end

-- What the process holds now: descriptors, open sockets, live tasklets
-- (besides the caller's own), Lua KiB.
function F.snapshot()
  F.settle()
  local st = ts.stats()
  return {
    fds = F.stablefds(),
    fdlist = F.fdlist(),
    sockets = st.sockets,
    tasklets = st.tasklets,
    kb = collectgarbage("count"),
  }
end

-- Assert that what a snapshot counted is back (Lua memory within kbslack).
-- Counts are taken again for up to half a second while they differ: a
-- thread of libuv's pool may still hold a descriptor for a lookup whose
-- tasklet was killed, and close callbacks run on the next turn of the loop.
function F.same(before, kbslack)
  local now
  for _ = 1, 50 do
    now = F.snapshot()
    if now.fds == before.fds and now.sockets == before.sockets and
       now.tasklets == before.tasklets then break end
    ts.sleep(0.01)
  end
  if now.fds ~= before.fds then  -- say which
    local diff = {}
    for fd, what in pairs(before.fdlist) do
      if now.fdlist[fd] ~= what then diff[#diff + 1] = ("-%s %s"):format(fd, what) end
    end
    for fd, what in pairs(now.fdlist) do
      if before.fdlist[fd] ~= what then diff[#diff + 1] = ("+%s %s"):format(fd, what) end
    end
    table.sort(diff)
    assert.equal(before.fds, now.fds, "descriptors: " .. table.concat(diff, ", "))
  end
  assert.equal(before.sockets, now.sockets, "open sockets")
  assert.equal(before.tasklets, now.tasklets, "live tasklets")
  if kbslack then
    assert.is_true(now.kb - before.kb < kbslack,
                   ("Lua memory grew by %.0f KiB"):format(now.kb - before.kb))
  end
  return now
end

-- A listening tasksock server on 127.0.0.1 and its port.
function F.listen(backlog)
  local socket = require "tasksock.socket"
  local srv = assert(socket.bind("127.0.0.1", 0, backlog or 128))
  local _, port = srv:getsockname()
  return srv, tonumber(port)
end

-- A connected pair: client, accepted side, and the server (closed).
function F.pair()
  local socket = require "tasksock.socket"
  local srv, port = F.listen()
  local c = assert(socket.connect("127.0.0.1", port))
  local a = assert(srv:accept())
  srv:close()
  return c, a
end

-- Reset the connection of sock: SO_LINGER 0, then close (an RST, not a FIN).
function F.reset(sock)
  assert(sock:setoption("linger", { on = true, timeout = 0 }))
  sock:close()
end

-- Start a Lua process running code, with this process's package paths (so
-- it finds tasksock) and Debian's LuaSocket as `require "socket"`; its
-- arguments (...) are arg[1..]. Returns a handle whose wait() returns the
-- process's output and whether it exited with status 0. Waiting blocks the
-- whole process: call it only once the child is done or about to be.
function F.child(code, ...)
  local lua = os.getenv("LUA") or "lua5.4"
  local name = os.tmpname()
  local f = assert(io.open(name, "w"))
  f:write(("package.path = %q\npackage.cpath = %q\n"):format(package.path, package.cpath))
  f:write(code)
  f:close()
  local args = {}
  for i, a in ipairs { ... } do args[i] = ("%q"):format(tostring(a)) end
  local p = assert(io.popen(("%s %s %s 2>&1"):format(lua, name, table.concat(args, " "))))
  return {
    wait = function()
      local out = p:read("a")
      local ok = p:close()
      os.remove(name)
      return out, ok == true
    end,
  }
end

-- libuv opens a spare descriptor for its loop when the first stream is
-- made: make one now, not inside a test that counts descriptors.
do
  local srv = F.listen()
  srv:close()
end

return F
