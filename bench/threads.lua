-- bench/threads.lua: cross-thread costs.
--   xchannel messages per second between two threads (buffered and
--   rendezvous, integers and small tables), thread spawn+join per second,
--   and ts.work round trips per second.
--
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" lua5.4 bench/threads.lua [scale]
local ts = require "tasksock"

local scale = tonumber(arg and arg[1]) or 1

local function rate(n, t) return string.format("%10.0f/s", n / t) end

-- One producer thread sends n copies of value into x; we receive them.
local function pipe(label, cap, n, value)
  local x = ts.xchannel(cap)
  local t0 = ts.now()
  local th = ts.thread.start([[
    local ts = require "tasksock"
    local x, n, v = ...
    for _ = 1, n do x:send(v) end
  ]], x, n, value)
  for _ = 1, n do x:receive() end
  assert(th:join())
  local t = ts.now() - t0
  print(string.format("xchannel %-34s %8d msgs %7.3fs %s", label, n, t, rate(n, t)))
end

pipe("capacity 1000, integers", 1000, math.floor(1e6 * scale), 42)
pipe("capacity 1000, {id=, name=, tags={3}}", 1000, math.floor(2e5 * scale),
     {id = 1, name = "item", tags = {"a", "b", "c"}})
pipe("capacity 0 (rendezvous), integers", 0, math.floor(2e4 * scale), 42)

do
  local n = math.floor(500 * scale)
  local t0 = ts.now()
  for i = 1, n do
    assert(ts.thread.start("return ...", i):join())
  end
  local t = ts.now() - t0
  print(string.format("thread start+join (each: new Lua state)     %8d      %7.3fs %s", n, t, rate(n, t)))
end

do
  local n = math.floor(2e4 * scale)
  ts.work("return")  -- a warm worker
  local t0 = ts.now()
  for i = 1, n do ts.work("return ...", i) end
  local t = ts.now() - t0
  print(string.format("ts.work round trip (one caller)            %8d      %7.3fs %s", n, t, rate(n, t)))
  local m = math.floor(2e4 * scale)
  t0 = ts.now()
  for _ = 1, 8 do
    ts.spawn(function() for i = 1, m // 8 do ts.work("return ...", i) end end)
  end
  ts.run()
  t = ts.now() - t0
  print(string.format("ts.work round trip (8 tasklets, pool %d)    %8d      %7.3fs %s",
                      ts.thread.pool(), m, t, rate(m, t)))
end
