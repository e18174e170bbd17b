-- echo_luv_co.lua: TCP echo server on luv, "luv with coroutines" style.
--
--   lua5.4 bench/echo_luv_co.lua PORT
--
-- A small coroutine wrapper, the way people usually write it: every
-- connection is served by its own coroutine that loops
--     data = conn:read(); conn:write(data)
-- where read/write yield and the luv callbacks resume the coroutine.
-- Prints READY once listening; exits on SIGTERM/SIGINT.
local uv = require "luv"

local port = tonumber(arg[1])
if not port then
  io.stderr:write("usage: lua5.4 echo_luv_co.lua PORT\n")
  os.exit(2)
end

local resume, yield, running = coroutine.resume, coroutine.yield, coroutine.running

local function check(co, ok, err)
  if not ok then
    io.stderr:write("echo_luv_co: ", debug.traceback(co, tostring(err)), "\n")
  end
end

------------------------------------------------------------------------------
-- the wrapper: a stream whose read/write block the calling coroutine
------------------------------------------------------------------------------
local Stream = {}
Stream.__index = Stream

local function wrap(handle)
  local self = setmetatable({
    handle = handle,
    queue = {},        -- chunks read while nobody was waiting
    head = 1, tail = 0,
    waiting = nil,     -- coroutine blocked in read()
    reading = false,
    eof = false, err = nil,
  }, Stream)

  self.on_read = function(err, data)
    if not data then self.eof = true; self.err = err end
    local co = self.waiting
    if co then
      self.waiting = nil
      check(co, resume(co, data, err))
    elseif data then
      self.tail = self.tail + 1
      self.queue[self.tail] = data
      -- nobody reads: pause the socket (back-pressure)
      handle:read_stop()
      self.reading = false
    end
  end
  return self
end

function Stream:read()
  local h = self.head
  if h <= self.tail then
    local data = self.queue[h]
    self.queue[h] = nil
    self.head = h + 1
    return data
  end
  if self.eof then return nil, self.err end
  if not self.reading then
    self.reading = true
    self.handle:read_start(self.on_read)
  end
  self.waiting = running()
  return yield()
end

function Stream:write(data)
  local co = running()
  self.handle:write(data, function(err)
    check(co, resume(co, err))
  end)
  local err = yield()
  if err then return nil, err end
  return true
end

function Stream:close()
  if not self.handle:is_closing() then self.handle:close() end
end

------------------------------------------------------------------------------
-- the server
------------------------------------------------------------------------------
local function serve(conn)
  while true do
    local data = conn:read()
    if not data then break end
    if not conn:write(data) then break end
  end
  conn:close()
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
  local co = coroutine.create(serve)
  check(co, resume(co, wrap(client)))
end))

for _, name in ipairs { "sigterm", "sigint" } do
  local sig = uv.new_signal()
  sig:start(name, function() uv.stop() end)
  sig:unref()
end

io.stdout:write("READY\n")
io.stdout:flush()
uv.run()
os.exit(0)
