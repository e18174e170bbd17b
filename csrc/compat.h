/*
** compat.h: the few differences between Lua 5.4 releases that tasksock meets.
** Debian ships 5.4.4, which has lua_resetthread but not lua_closethread (5.4.6).
*/
#ifndef TSK_COMPAT_H
#define TSK_COMPAT_H

#include <lua.h>

#if LUA_VERSION_NUM != 504
#error "tasksock needs Lua 5.4"
#endif

/*
** Close a dead or suspended coroutine: run its pending to-be-closed
** variables and reset its stack. Returns the status; on an error the
** error object is on top of co's stack.
*/
#if LUA_VERSION_RELEASE_NUM >= 50406
#define tsk_closethread(co, from) lua_closethread((co), (from))
#else
#define tsk_closethread(co, from) ((void)(from), lua_resetthread(co))
#endif

#endif
