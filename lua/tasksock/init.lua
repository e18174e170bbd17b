-- tasksock: Lua coroutines as tasklets on libuv, with LuaSocket's API.
-- This is the face of the module; the work is done in tasksock.core (C).
local core = require "tasksock.core"

local M = {}
for k, v in pairs(core) do M[k] = v end

M._VERSION = "tasksock 0.1.0"

-- ts.socket: LuaSocket's namespace (tasksock.socket), loaded on first use.
setmetatable(M, { __index = function(t, k)
  if k == "socket" then
    local v = require "tasksock.socket"
    rawset(t, k, v)
    return v
  end
end })

-- The drop-in for LuaSocket (tasksock.dropin): install([opts]), uninstall().
function M.install(opts) return require("tasksock.dropin").install(opts) end
function M.uninstall() return require("tasksock.dropin").uninstall() end

return M
