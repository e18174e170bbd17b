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

  it("lists exactly the live ones while tasklets come and go", function()
    local ch = ts.channel()
    local live = {}
    for round = 1, 5 do
      for _ = 1, 30 do
        local t = ts.spawn(function() ch:receive() end)
        live[t] = true
      end
      ts.yield()
      local n = 0
      for t in pairs(live) do  -- let every third one go
        n = n + 1
        if n % 3 == round % 3 then t:kill(); live[t] = nil end
      end
      ts.yield()
      local seen, count = {}, 0
      for _, e in ipairs(ts.tasklets()) do
        assert.is_true(live[e.tasklet])
        assert.is_nil(seen[e.tasklet])
        seen[e.tasklet] = true
        count = count + 1
      end
      for t in pairs(live) do assert.is_true(seen[t]) end
      assert.equal(count, ts.stats().tasklets)
    end
    for t in pairs(live) do t:kill() end
    ts.run()
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

  it("lists at most 20 and says when there are more", function()
    for _, n in ipairs{20, 21} do
      local ch = ts.channel()
      local ws = {}
      for i = 1, n do ws[i] = ts.spawn(function() ch:receive() end) end
      local ok, err = pcall(ts.run)
      assert.is_false(ok)
      local _, lines = err:gsub("\n  tasklet '", "")
      assert.equal(20, lines)
      assert.equal(n > 20, err:find("\n  ...", 1, true) ~= nil)
      for i = 1, n do ws[i]:kill() end
      ts.run()
    end
  end)
end)
