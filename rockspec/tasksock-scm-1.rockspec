-- luarocks make rockspec/tasksock-scm-1.rockspec [--tree DIR]
-- (Debian's luarocks defaults to Lua 5.1: add --lua-version 5.4.)
rockspec_format = "3.0"
package = "tasksock"
version = "scm-1"
source = {
  url = "git+file:///dev/null",  -- built from the checkout with `luarocks make`
}
description = {
  summary = "Lua coroutines as tasklets on libuv, with LuaSocket's API",
  detailed = [[
    tasksock runs Lua coroutines as tasklets on one libuv loop and gives them
    channels, timers, threads and a LuaSocket-compatible socket API whose
    blocking calls block only the calling tasklet. It can stand in for
    LuaSocket so unmodified LuaSocket code runs cooperatively.
  ]],
  license = "MIT",
  labels = {"coroutines", "networking", "libuv", "luasocket"},
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
external_dependencies = {
  LIBUV = { header = "uv.h", library = "uv" },
}
build = {
  -- The Makefile is the one list of sources (csrc/*.c), so the rock can
  -- never build a different set of files than `make` does.
  type = "make",
  build_target = "all",
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LIBFLAG = "$(LIBFLAG)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    LIBUV_INCDIR = "$(LIBUV_INCDIR)",
    LIBUV_LIBDIR = "$(LIBUV_LIBDIR)",
  },
  install_target = "install",
  install_variables = {
    INST_LIBDIR = "$(LIBDIR)",
    INST_LUADIR = "$(LUADIR)",
    INST_INCDIR = "$(PREFIX)/include",
  },
}
