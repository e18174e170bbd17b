-- Scheduler benchmarks: tasklet spawn+finish and channel ping-pong, each
-- beside bare coroutines measured in the same run, printed as ratios.
-- Run: make bench (or, from the checkout, after `make`:
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" lua5.4 bench/sched.lua)
-- The plain coroutine functions, taken before tasksock replaces resume and
-- wrap with versions that let scheduler yields pass through.
local co_create, co_resume, co_yield, co_wrap =
  coroutine.create, coroutine.resume, coroutine.yield, coroutine.wrap
local ts = require "tasksock"

local clock = os.clock
local N = tonumber(os.getenv("N")) or 200000
local REPEAT = tonumber(os.getenv("REPEAT")) or 5

local function median(xs)
  table.sort(xs)
  return xs[(#xs + 1) // 2]
end

-- f(n) once, as operations per second.
local function once(f, n)
  collectgarbage()
  local t0 = clock()
  f(n)
  return n / (clock() - t0)
end

-- ours and bare run back to back REPEAT times: the medians of each rate
-- and of the per-pair ratios (a pair shares the machine's state of the
-- moment, so the ratio is steadier than the rates on a noisy machine).
local function compare(ours, bare, n)
  local os_, bs, rs = {}, {}, {}
  for i = 1, REPEAT do
    bs[i] = once(bare, n)
    os_[i] = once(ours, n)
    rs[i] = os_[i] / bs[i]
  end
  return median(os_), median(bs), median(rs)
end

local function noop() end

local function bare_spawn(n)
  for _ = 1, n do co_resume(co_create(noop)) end
end

-- The bare loop in the tasklets' pattern: 100 coroutines created and
-- held, then each resumed. What the collector makes of coroutines that
-- wait for their turn shows here without any scheduler.
local function bare_batch(n)
  local held = {}
  for _ = 1, n // 100 do
    for i = 1, 100 do held[i] = co_create(noop) end
    for i = 1, 100 do co_resume(held[i]); held[i] = nil end
  end
end

-- Spawned in batches of 100, each batch run to completion: live memory
-- stays small, as with the bare loop.
local function ts_spawn(n)
  local spawn, run = ts.spawn, ts.run
  for _ = 1, n // 100 do
    for _ = 1, 100 do spawn(noop) end
    run()
  end
end

-- All spawned before any runs: n live tasklets at once.
local function ts_spawn_all(n)
  local spawn = ts.spawn
  for _ = 1, n do spawn(noop) end
  ts.run()
end

local function bare_pingpong(n)
  local co = co_wrap(function() while true do co_yield() end end)
  for _ = 1, n do co() end
end

local function ts_pingpong(n)
  local ping, pong = ts.channel(), ts.channel()
  ts.spawn(function()
    for _ = 1, n do pong:send(ping:receive()) end
  end)
  ts.spawn(function()
    for i = 1, n do ping:send(i); pong:receive() end
  end)
  ts.run()
end

local function ts_yield(n)
  ts.spawn(function() for _ = 1, n do ts.yield() end end)
  ts.run()
end

local rows = {}
local function row(name, what, ours, bare, ratio)
  rows[#rows + 1] = string.format("%-34s %14.0f %14.0f %8.3f   (%s)", name, ours, bare, ratio, what)
end

-- Spawning allocates, so the collector's mode matters: the lua5.4
-- interpreter runs in generational mode, where a bare coroutine that dies
-- at once is nearly free, while a tasklet waiting for its turn survives
-- minor collections and is traversed again by each of them.
local gcmode = collectgarbage("incremental")  -- returns the mode it was in
for _, mode in ipairs { gcmode, gcmode == "generational" and "incremental" or "generational" } do
  collectgarbage(mode)
  row("spawn+finish /s [" .. mode:sub(1, 3) .. "]", "bare: coroutine.create + resume; GC " .. mode,
      compare(ts_spawn, bare_spawn, N))
  row("  vs bare batched [" .. mode:sub(1, 3) .. "]", "bare: 100 created and held, then resumed",
      compare(ts_spawn, bare_batch, N))
  row("spawn all, then run /s [" .. mode:sub(1, 3) .. "]", "N tasklets alive at once; GC " .. mode,
      compare(ts_spawn_all, bare_spawn, N))
end
collectgarbage(gcmode)
row("channel ping-pong /s", "bare: one resume/yield round trip",
    compare(ts_pingpong, bare_pingpong, N))
row("yield /s", "bare: one resume/yield round trip", compare(ts_yield, bare_pingpong, N))

print(string.format("%s, %s, N=%d, medians of %d pairs (bare, then tasksock)", ts._VERSION, _VERSION, N, REPEAT))
print(string.format("%-34s %14s %14s %8s", "benchmark", "tasksock", "bare", "ratio"))
for _, r in ipairs(rows) do print(r) end
