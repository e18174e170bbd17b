-- echo_copas.lua: TCP echo server on copas (LuaSocket + socket.select),
-- one copas coroutine per connection.
--
--   lua5.4 bench/echo_copas.lua PORT
--
-- Debian's lua-copas (Copas 1.1.7 in package 1.2.0) is installed for Lua
-- 5.1 and 5.2 only, but it is plain Lua on LuaSocket and coxpcall and runs
-- unchanged on 5.4: when `require "copas"` fails, its Debian directory is
-- added to package.path (LuaSocket itself is installed for 5.4).
--
-- Each handler loops copas.receivePartial(skt, N) (returns whatever has
-- arrived, up to N bytes: as the third result, "partial", when fewer than
-- N came) and copas.send(skt, data). copas dispatches on socket.select,
-- so a process can serve only descriptors below FD_SETSIZE (1024).
-- Prints READY once listening; copas has no signal handling, so SIGTERM
-- ends the process the default way.
local port = tonumber(arg[1])
if not port then
  io.stderr:write("usage: lua5.4 echo_copas.lua PORT\n")
  os.exit(2)
end

local ok, copas = pcall(require, "copas")
if not ok then
  -- the same directories, for the Lua versions the package installs to
  package.path = package.path .. ";" .. package.path:gsub("5%.4", "5.2") ..
    ";" .. package.path:gsub("5%.4", "5.1")
  copas = require "copas"
end
local socket = require "socket"

local CHUNK = 65536

local function serve(skt)
  skt:setoption("tcp-nodelay", true)
  while true do
    local data, err, part = copas.receivePartial(skt, CHUNK)
    data = data or part
    if data and #data > 0 then
      if not copas.send(skt, data) then break end
    end
    if err and err ~= "timeout" then break end     -- "closed" or an error
  end
  -- copas.autoclose closes skt when the handler returns
end

local srv, err = socket.bind("127.0.0.1", port, 1024)
if not srv then
  io.stderr:write("echo_copas: bind: ", tostring(err), "\n")
  os.exit(1)
end
copas.addserver(srv, serve, 0)      -- accept without waiting (default 0.1 s)

io.stdout:write("READY\n")
io.stdout:flush()
copas.loop()
