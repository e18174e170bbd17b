-- tasksock.install: requiring it installs the drop-in (tasksock.dropin) with
-- its default options, so an unmodified LuaSocket script runs on tasksock:
--
--   lua5.4 -l tasksock.install script.lua
--
-- It returns tasksock.dropin (install, uninstall, installed).
local dropin = require "tasksock.dropin"
dropin.install()
return dropin
