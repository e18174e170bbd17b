-- Many concurrent HTTP fetches through LuaSocket's own socket.http, made
-- cooperative by the drop-in: after tasksock.install(), `require "socket"`
-- gives tasksock's namespace, so socket.http's blocking connect, send and
-- receive block only the tasklet that calls http.request.
--
-- A small HTTP/1.0 server runs in tasklets of the same program; each
-- answer takes DELAY seconds. N fetches at once take about one DELAY.
--
--   lua5.4 examples/http_fetch.lua [fetches [delay]]
local ts = require "tasksock"
ts.install()                         -- before anything requires "socket"
local socket = require "socket"      -- tasksock's namespace now
local http = require "socket.http"   -- LuaSocket's own code, over tasksock
local ltn12 = require "ltn12"

local N = tonumber(arg and arg[1]) or 50
local DELAY = tonumber(arg and arg[2]) or 0.2

-- The server: one tasklet per connection, plain LuaSocket-style code.
local server = assert(socket.bind("127.0.0.1", 0, 256))
local _, port = server:getsockname()

local function handle(c)
  c:settimeout(5)
  local request = c:receive()        -- "GET /path HTTP/1.0"
  repeat local header = c:receive() until header == "" or header == nil
  local path = request and request:match("^GET (%S+)") or "?"
  ts.sleep(DELAY)                    -- a slow backend; other requests go on
  local body = "you asked for " .. path .. "\n"
  c:send("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
         .. #body .. "\r\n\r\n" .. body)
  c:close()
end

ts.spawn(function()
  while true do
    local c = server:accept()
    if not c then break end          -- closed: we are done
    ts.spawn(handle, c)
  end
end).name = "http server"

-- The fetches: each in its own tasklet, through socket.http.
local t0 = socket.gettime()
local fetches = {}
for i = 1, N do
  fetches[i] = ts.spawn(function()
    local chunks = {}
    local ok, code = http.request {
      url = ("http://127.0.0.1:%d/item/%d"):format(port, i),
      sink = ltn12.sink.table(chunks),
    }
    return ok, code, table.concat(chunks)
  end)
end

local good = 0
for i, t in ipairs(fetches) do
  local _, ok, code, body = t:join()
  if ok and code == 200 and body == ("you asked for /item/%d\n"):format(i) then
    good = good + 1
  else
    print(("fetch %d: %s %s"):format(i, tostring(ok), tostring(code)))
  end
end
local took = socket.gettime() - t0
server:close()
ts.run()
ts.uninstall()                       -- later requires get the real LuaSocket

print(("%d of %d fetches through socket.http right in %.2f s (one after another: %.1f s)")
  :format(good, N, took, N * DELAY))
os.exit(good == N and 0 or 1)
