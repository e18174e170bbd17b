-- Signals handled on the loop: each arrival runs the handler in a tasklet.
local ts = require "tasksock"

local function mypid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("a"):match("^(%d+)")
  f:close()
  return pid
end

describe("tasksock.signal", function()
  it("runs the handler in a tasklet with the signal's name", function()
    local ch = ts.channel(1)
    ts.signal("SIGUSR1", function(name) ch:send({name, ts.current() ~= nil}) end)
    os.execute("kill -USR1 " .. mypid())
    local got = ch:receive(5)
    assert.same({"SIGUSR1", true}, got)
    ts.signal("SIGUSR1", nil)
  end)

  it("accepts short and lower-case names and returns the previous handler", function()
    local f1 = function() end
    local f2 = function() end
    assert.is_nil(ts.signal("usr2", f1))
    assert.equal(f1, ts.signal("USR2", f2))
    assert.equal(f2, ts.signal("SIGUSR2", nil))
    assert.is_nil(ts.signal("SIGUSR2", nil))
  end)

  it("wakes a blocked ts.run: a clean shutdown on SIGTERM", function()
    local stop = ts.channel()
    local served = 0
    ts.spawn(function()
      while true do
        local v = stop:receive(0.01)
        if v == "stop" then return end
        served = served + 1
      end
    end)
    ts.signal("TERM", function() stop:send("stop") end)
    ts.spawn(function() ts.sleep(0.03); os.execute("kill -TERM " .. mypid()) end)
    ts.run()
    ts.signal("TERM", nil)
    assert.is_true(served >= 1)
  end)

  it("checks its arguments", function()
    assert.error_matches(function() ts.signal("SIGNOPE", print) end, "bad argument #1 to 'signal'.*unknown signal")
    assert.error_matches(function() ts.signal({}, print) end, "bad argument #1 to 'signal'")
    assert.error_matches(function() ts.signal("INT", 42) end, "bad argument #2 to 'signal'")
    assert.error_matches(function() ts.signal(0, print) end, "bad argument #1 to 'signal'")
  end)
end)
