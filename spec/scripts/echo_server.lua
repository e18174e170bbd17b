-- A LuaSocket server script, unmodified LuaSocket style: blocking calls in the
-- main chunk. Prints its port on the first line, then serves two clients one
-- after the other: each line comes back in capitals, "bulk n" reads n bytes
-- and answers their count, "quit" answers "bye" and ends the connection.
local socket = require "socket"

local server = assert(socket.bind("127.0.0.1", 0))
local _, port = server:getsockname()
io.write(port, "\n")
io.flush()
server:settimeout(10)

for _ = 1, 2 do
  local c = assert(server:accept())
  c:settimeout(5)
  print("server: peer family", select(3, c:getpeername()))
  while true do
    local line, err, partial = c:receive()
    if not line then
      print("server: " .. tostring(err) .. " [" .. tostring(partial) .. "]")
      break
    end
    if line == "quit" then
      c:send("bye\n")
      break
    end
    local n = tonumber(line:match("^bulk (%d+)$"))
    if n then
      local data = assert(c:receive(n))
      c:send(#data .. " " .. data:sub(1, 3) .. "\n")
    else
      c:send(line:upper() .. "\n")
    end
  end
  c:close()
end
server:close()
print("server done", socket._VERSION)
