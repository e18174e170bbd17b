-- The rockspec: `luarocks make` builds and installs tasksock offline into a
-- tree, and a script runs against that install alone.
local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"exit=$?\"")
  local out = p:read("a")
  p:close()
  return out, tonumber(out:match("exit=(%d+)%s*$"))
end

describe("rockspec/tasksock-scm-1.rockspec", function()
  it("installs with luarocks make into a tree, and the install works on its own", function()
    local tmp = assert(sh("mktemp -d"):match("^(%S+)"))
    finally(function() sh("rm -rf " .. tmp) end)
    -- build from a copy of the source files, without build products
    local out, code = sh(string.format(
      "git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t %s/",
      tmp))
    assert.equal(0, code, out)
    out, code = sh(string.format(
      "cd %s/ && luarocks --lua-version 5.4 make rockspec/tasksock-scm-1.rockspec --tree %s/tree",
      tmp, tmp))
    assert.equal(0, code, out)
    local script = [[
      local ts = require "tasksock"
      assert(package.searchpath("tasksock.core", package.cpath):find("/tree/", 1, true))
      local ch = ts.channel()
      ts.spawn(function() ch:send("from the installed rock") end)
      print(ch:receive())
    ]]
    out, code = sh(string.format(
      "cd %s && LUA_PATH='%s/tree/share/lua/5.4/?.lua;%s/tree/share/lua/5.4/?/init.lua' " ..
      "LUA_CPATH='%s/tree/lib/lua/5.4/?.so' lua5.4 -e %q",
      tmp, tmp, tmp, tmp, script))
    assert.equal(0, code, out)
    assert.equal("from the installed rock\n", out:gsub("exit=%d+%s*$", ""))
  end)
end)
