-- echo_luv.lua: TCP echo server on luv (libuv for Lua), plain callbacks.
--
--   lua5.4 bench/echo_luv.lua PORT
--
-- The fastest idiomatic luv style: one read callback per connection that
-- hands the received string straight back with try_write, queueing only
-- what the kernel did not take with write (no callback, no coroutine).
-- Prints READY once listening; exits on SIGTERM/SIGINT.
local uv = require "luv"

local port = tonumber(arg[1])
if not port then
  io.stderr:write("usage: lua5.4 echo_luv.lua PORT\n")
  os.exit(2)
end

local server = uv.new_tcp()
assert(server:bind("127.0.0.1", port))
assert(server:listen(1024, function(err)
  if err then return end
  local client = uv.new_tcp()
  if not server:accept(client) then
    client:close()
    return
  end
  client:nodelay(true)
  client:read_start(function(_, data)
    if data then
      -- try_write returns the byte count, or nil+EAGAIN when nothing went out
      local n = client:try_write(data)
      if n ~= #data then
        if n and n > 0 then data = data:sub(n + 1) end
        client:write(data)
      end
    elseif not client:is_closing() then
      client:close()       -- EOF (rerr == nil) or read error
    end
  end)
end))

local function stop()
  uv.stop()
end
for _, name in ipairs { "sigterm", "sigint" } do
  local sig = uv.new_signal()
  sig:start(name, stop)
  sig:unref()
end

io.stdout:write("READY\n")
io.stdout:flush()
uv.run()
os.exit(0)
