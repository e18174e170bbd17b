-- accept out of descriptors, differential: LuaSocket's accept returns the
-- error and leaves the connection queued in the kernel, to be accepted once
-- descriptors are free. (libuv's own listen would accept and drop such
-- connections; tasksock accepts with accept(2) itself.) Each library runs
-- in a child process whose descriptor limit is low.

local script = [==[
if arg[1] == "tasksock" then require("tasksock").install() end
local socket = require "socket"
assert((arg[1] == "tasksock") == (socket.tcp().connect ~= nil and package.loaded.tasksock ~= nil))
local srv = assert(socket.bind("127.0.0.1", 0))
local _, port = srv:getsockname()
local out = {}
local function note(a, b)
  out[#out + 1] = tostring(a) .. " " .. tostring(b)
end
-- the clients: another process, connecting once this one is out of descriptors
local lua = os.getenv("LUA") or "lua5.4"
local peer = assert(io.popen(lua .. [[ -e '
  local socket = require "socket"
  socket.sleep(0.3)
  local c = {}
  for i = 1, 3 do c[i] = assert(socket.connect("127.0.0.1", ]] .. port .. [[)) end
  for i = 1, 3 do c[i]:settimeout(3) print(c[i]:receive(2)) end']]))
local hold = {}
while true do
  local f = io.open("/dev/null")
  if not f then break end
  hold[#hold + 1] = f
end
srv:settimeout(5)
local c, e = srv:accept()
note(c and "accepted" or nil, e)
srv:settimeout(0)
c, e = srv:accept()
note(c and "accepted" or nil, e)
for _ = 1, 6 do table.remove(hold):close() end
srv:settimeout(1)
local got = {}
for i = 1, 3 do
  local a, err = srv:accept()
  note(a and "accepted" or nil, err)
  if a then a:send("x" .. i) got[#got + 1] = a end
end
note(peer:read("a"))
print(table.concat(out, "\n"))
]==]

local function run(lib)
  local name = os.tmpname()
  local f = assert(io.open(name, "w"))
  f:write(("package.path = %q\npackage.cpath = %q\n"):format(package.path, package.cpath))
  f:write(script)
  f:close()
  local lua = os.getenv("LUA") or "lua5.4"
  local p = assert(io.popen(("ulimit -n 48 && exec %s %s %s 2>&1"):format(lua, name, lib)))
  local out = p:read("a")
  p:close()
  os.remove(name)
  return out
end

describe("accept out of descriptors", function()
  it("fails with the kernel's error and keeps the connections queued, as LuaSocket", function()
    local want, got = run("luasocket"), run("tasksock")
    assert.matches("Too many open files", want)
    assert.are.equal(want, got)
    assert.are.equal(3, select(2, want:gsub("accepted", "")))
  end)
end)
