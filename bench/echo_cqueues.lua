-- echo_cqueues.lua: TCP echo server on cqueues, one coroutine per connection.
--
--   lua5.4 bench/echo_cqueues.lua PORT
--
-- Each connection coroutine loops xread(-N, "bn") (return 1..N bytes as
-- soon as any are available, binary, no buffering) and xwrite(data, "bn")
-- (send, flush immediately). Errors are returned instead of thrown, so a
-- reset connection only ends its own coroutine.
-- Prints READY once listening; exits on SIGTERM/SIGINT.
local cqueues = require "cqueues"
local socket = require "cqueues.socket"
local signal = require "cqueues.signal"

local port = tonumber(arg[1])
if not port then
  io.stderr:write("usage: lua5.4 echo_cqueues.lua PORT\n")
  os.exit(2)
end

local CHUNK = 65536

local function return_errors(_, _, why) return why end

local cq = cqueues.new()

local function serve(con)
  con:onerror(return_errors)
  con:setmode("bn", "bn")
  con:setbufsiz(CHUNK, CHUNK)
  while true do
    local data = con:xread(-CHUNK, "bn")
    if not data then break end                      -- EOF or error
    if not con:xwrite(data, "bn") then break end
  end
  con:close()
end

-- Linux signalfd only sees blocked signals
signal.block(signal.SIGTERM, signal.SIGINT)
cq:wrap(function()
  local listener = signal.listen(signal.SIGTERM, signal.SIGINT)
  listener:wait()
  os.exit(0)
end)

cq:wrap(function()
  local srv = socket.listen { host = "127.0.0.1", port = port, reuseaddr = true,
                              nodelay = true }
  srv:onerror(return_errors)
  local ok, err = srv:listen()
  if not ok then
    io.stderr:write("echo_cqueues: listen: ", tostring(err), "\n")
    os.exit(1)
  end
  io.stdout:write("READY\n")
  io.stdout:flush()
  while true do
    local con, why = srv:accept { nodelay = true }
    if con then
      cq:wrap(function() serve(con) end)
    elseif why ~= nil then
      io.stderr:write("echo_cqueues: accept: ", tostring(why), "\n")
      cqueues.sleep(0.01)        -- e.g. EMFILE: do not spin
    end
  end
end)

while true do
  local ok, err = cq:loop()
  if not ok then
    io.stderr:write("echo_cqueues: ", tostring(err), "\n")
  elseif cq:empty() then
    break
  end
end
