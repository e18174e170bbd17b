-- What a send that timed out reported as sent still reaches the peer when
-- the process ends right after closing the socket: LuaSocket's kernel would
-- deliver it. tasksock hands the kernel what libuv still holds when the
-- Lua state closes. (Closing or collecting a socket while the process goes
-- on is in tcp_diff_spec, "send that times out".)
local F = require "spec.helper.fault"
local LS = require "spec.helper.luasocket_diff".luasocket

local sender = [[
local socket = require "tasksock.socket"
local c = assert(socket.connect("127.0.0.1", arg[1]))
c:setoption("send-buffer-size", 8192)
c:settimeout(0.2)
local n, err, last = c:send(string.rep("0123456789abcdef", 300000 // 16))
print(("n=%s err=%s last=%d"):format(tostring(n), tostring(err), last))
c:close()
]]

describe("the end of the process", function()
  it("leaves the kernel what a timed-out send reported as sent, after close", function()
    local srv = assert(LS.bind("127.0.0.1", 0))
    local _, port = srv:getsockname()
    srv:settimeout(F.time(10))
    local child = F.child(sender, port)
    local a = assert(srv:accept())
    local out, ok = child.wait()  -- nothing read until the sender has ended
    assert.is_true(ok, out)
    local last = tonumber(out:match("last=(%d+)"))
    assert.matches("err=timeout", out)
    a:settimeout(F.time(10))
    local data, err, partial = a:receive("*a")
    data = data or partial
    assert.is_nil(err)
    assert.equal(last, #data)
    assert.equal(string.rep("0123456789abcdef", 300000 // 16):sub(1, last), data)
    a:close() srv:close()
  end)
end)
