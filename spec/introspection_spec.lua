-- Introspection: tasklets(), traceback(), stats(), the deadlock report.
local ts = require "tasksock"

describe("tasksock.tasklets", function()
  it("lists every live tasklet with name, status, what it waits on and since when", function()
    local ch = ts.channel()
    local a = ts.spawn(function() ch:receive() end)
    a.name = "receiver"
    local b = ts.spawn(function() ts.sleep(10) end)
    local c = ts.spawn(function() end)
    ts.yield()
    local by = {}
    for _, e in ipairs(ts.tasklets()) do by[e.tasklet] = e end
    assert.equal("receiver", by[a].name)
    assert.equal("blocked", by[a].status)
    assert.equal("channel", by[a].waiting)
    assert.equal("sleep", by[b].waiting)
    assert.is_true(by[b].since >= 0)
    assert.is_nil(by[c])  -- finished
    a:kill(); b:kill()
    ts.run()
    assert.same({}, ts.tasklets())
  end)
end)

describe("tasksock.traceback", function()
  it("shows where a blocked tasklet waits", function()
    local function waiter() ts.sleep(10) end
    local t = ts.spawn(function() waiter() end)
    ts.yield()
    local tb = ts.traceback(t, "where")
    assert.matches("^where\nstack traceback:", tb)
    assert.matches("sleep'", tb)
    assert.matches("waiter", tb)
    t:kill()
    ts.run()
  end)

  it("checks its argument", function()
    assert.error_matches(function() ts.traceback({}) end, "bad argument #1 to 'traceback'")
  end)
end)

describe("tasksock.stats", function()
  it("counts tasklets, spawns and switches", function()
    local before = ts.stats()
    for _ = 1, 10 do ts.spawn(function() ts.yield() end) end
    local mid = ts.stats()
    assert.equal(before.tasklets + 10, mid.tasklets)
    ts.run()
    local after = ts.stats()
    assert.equal(before.spawned + 10, after.spawned)
    assert.is_true(after.switches >= before.switches + 20)
    assert.equal(0, after.tasklets)
    for _, k in ipairs{"ready", "timers", "sockets", "bytesin", "bytesout"} do
      assert.is_number(after[k])
    end
  end)
end)

describe("the deadlock report", function()
  it("names each blocked tasklet and what it waits on", function()
    local ch = ts.channel()
    local t = ts.spawn(function() ch:send(1) end)
    t.name = "stuck-sender"
    local ok, err = pcall(ts.run)
    assert.is_false(ok)
    assert.matches("deadlock: 1 tasklet%(s%) blocked", err)
    assert.matches("tasklet 'stuck%-sender' %(blocked, waiting on channel%)", err)
    t:kill()
    ts.run()
  end)
end)
