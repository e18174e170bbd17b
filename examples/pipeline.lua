-- A producer/consumer pipeline over channels with a capacity:
--
--   producer --jobs(8)--> 4 workers --results(8)--> consumer
--
-- Each channel holds at most 8 values, so a fast stage waits for a slow
-- one (backpressure) instead of piling values up. The end travels down the
-- pipe as a close: the producer closes `jobs` when it is done; a worker
-- that receives nil, "closed" stops; once every worker has stopped, a
-- closer tasklet closes `results`; the consumer still receives what was
-- buffered, then nil, "closed", and stops.
--
--   lua5.4 examples/pipeline.lua [items [workers]]
local ts = require "tasksock"

local ITEMS = tonumber(arg and arg[1]) or 1000
local WORKERS = tonumber(arg and arg[2]) or 4

local jobs = ts.channel(8)
local results = ts.channel(8)

local producer = ts.spawn(function()
  for i = 1, ITEMS do
    assert(jobs:send(i))             -- waits while 8 jobs are queued
  end
  jobs:close()                       -- no more jobs; queued ones still go out
end)
producer.name = "producer"

local function worker(id)
  local done = 0
  while true do
    local n, err = jobs:receive()
    if n == nil then assert(err == "closed") break end
    if n % 50 == 0 then ts.sleep(0.001) end   -- now and then a slow job
    assert(results:send({ n = n, square = n * n, by = id }))
    done = done + 1
  end
  return done
end

local workers = {}
for id = 1, WORKERS do
  workers[id] = ts.spawn(worker, id)
  workers[id].name = "worker-" .. id
end

ts.spawn(function()                  -- the closer: results ends after the workers
  for _, w in ipairs(workers) do assert(w:join()) end
  results:close()
end).name = "closer"

local consumer = ts.spawn(function()
  local count, sum, most = 0, 0, 0
  while true do
    local r, err = results:receive()
    if r == nil then assert(err == "closed") break end
    count, sum = count + 1, sum + r.square
    most = math.max(most, results:count())
  end
  return count, sum, most
end)
consumer.name = "consumer"

local ok, count, sum, most = consumer:join()   -- drives the loop
assert(ok, count)
local expect = ITEMS * (ITEMS + 1) * (2 * ITEMS + 1) // 6
for id, w in ipairs(workers) do
  print(("worker-%d handled %d jobs"):format(id, select(2, w:join())))
end
print(("consumed %d results, sum of squares %d (expected %d), at most %d queued: %s")
  :format(count, sum, expect, most, sum == expect and count == ITEMS and "ok" or "WRONG"))
os.exit(sum == expect and count == ITEMS and 0 or 1)
