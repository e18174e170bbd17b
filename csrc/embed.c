/*
** embed.c: the C embedding API of tasksock.h: opening tasksock in a
** host's state and loop, running it, spawning tasklets and handling their
** errors from C, and xchannels for host threads.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "xwait.h"

void tsk_embed_preload(lua_State *L) {
  int found;
  if (lua_getglobal(L, "package") != LUA_TTABLE) {
    lua_pop(L, 1);
    luaL_error(L, "tasksock needs the package library");
  }
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_tasksock_core);
  lua_setfield(L, -2, "tasksock.core");
  /* the Lua face, if it can be found; else the core stands for it */
  lua_getfield(L, -2, "searchpath");
  lua_pushliteral(L, "tasksock");
  lua_getfield(L, -4, "path");
  if (lua_isfunction(L, -3) && lua_isstring(L, -1)) {
    lua_call(L, 2, 1);
    found = !lua_isnil(L, -1);
  }
  else {
    lua_pop(L, 2);
    found = 0;
  }
  lua_pop(L, 1);
  if (!found) {
    lua_pushcfunction(L, luaopen_tasksock_core);
    lua_setfield(L, -2, "tasksock");
  }
  lua_pop(L, 2);
}

/* Push the core module table (package.loaded["tasksock.core"]). */
static void pushcore(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "tasksock.core") != LUA_TTABLE) {
    lua_pop(L, 2);
    luaL_requiref(L, "tasksock.core", luaopen_tasksock_core, 0);
    return;
  }
  lua_remove(L, -2);
}

static int open_p(lua_State *L) {
  uv_loop_t *loop = (uv_loop_t *)lua_touserdata(L, 1);
  if (lua_getfield(L, LUA_REGISTRYINDEX, TSK_SCHED_KEY) == LUA_TUSERDATA) {
    tsk_Sched *S = tsk_sched(L);
    if (loop != NULL && S->loop != loop)
      return luaL_error(L, "tasksock is already open in this state, on another loop");
  }
  else if (loop != NULL) {
    lua_pushlightuserdata(L, loop);
    lua_setfield(L, LUA_REGISTRYINDEX, TSK_LOOP_KEY);
  }
  tsk_embed_preload(L);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "tasksock.core");
  lua_call(L, 1, 0);
  return 0;
}

int tsk_open(lua_State *L, uv_loop_t *loop) {
  int st;
  lua_pushcfunction(L, open_p);
  lua_pushlightuserdata(L, loop);
  st = lua_pcall(L, 1, 0, 0);
  return st;
}

static int loop_p(lua_State *L) {
  lua_pushlightuserdata(L, tsk_sched(L)->loop);
  return 1;
}

uv_loop_t *tsk_loop(lua_State *L) {
  uv_loop_t *loop = NULL;
  lua_pushcfunction(L, loop_p);
  if (lua_pcall(L, 0, 1, 0) == LUA_OK) loop = (uv_loop_t *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return loop;
}

static int run_p(lua_State *L) {
  int mode = (int)lua_tointeger(L, 1);
  tsk_Sched *S;
  if (mode == TSK_RUN_DEFAULT) {
    pushcore(L);
    lua_getfield(L, -1, "run");
    lua_call(L, 0, 0);
    return 0;
  }
  S = tsk_sched(L);
  if (S->current != NULL || S->inloop)
    return luaL_error(L, "tsk_run called from inside a tasklet or the loop");
  S->inloop = 1;
  uv_run(S->loop, mode == TSK_RUN_ONCE ? UV_RUN_ONCE : UV_RUN_NOWAIT);
  S->inloop = 0;
  return 0;
}

int tsk_run(lua_State *L, tsk_RunMode mode) {
  lua_pushcfunction(L, run_p);
  lua_pushinteger(L, (lua_Integer)mode);
  return lua_pcall(L, 1, 0, 0);
}

static int spawn_p(lua_State *L) {
  int n = lua_gettop(L);
  pushcore(L);
  lua_getfield(L, -1, "spawn");
  lua_replace(L, -2);
  lua_insert(L, 1);
  lua_call(L, n, 1);
  return 1;
}

int tsk_tasklet_spawn(lua_State *L, int nargs) {
  lua_pushcfunction(L, spawn_p);
  lua_insert(L, -(nargs + 2));
  return lua_pcall(L, nargs + 1, 1, 0);
}

typedef struct ErrHandler {
  tsk_ErrorCb cb;
  void *ud;
} ErrHandler;

/* The Lua error handler standing for a C one: (tasklet, err, traceback). */
static int onerror_c(lua_State *L) {
  ErrHandler *e = (ErrHandler *)lua_touserdata(L, lua_upvalueindex(1));
  const char *msg = luaL_tolstring(L, 2, NULL);
  const char *tb = lua_tostring(L, 3);
  e->cb(e->ud, L, msg, tb ? tb : msg);
  return 0;
}

static int onerror_p(lua_State *L) {
  ErrHandler *src = (ErrHandler *)lua_touserdata(L, 1);
  pushcore(L);
  lua_getfield(L, -1, "onerror");
  if (src->cb == NULL) lua_pushnil(L);
  else {
    ErrHandler *e = (ErrHandler *)lua_newuserdatauv(L, sizeof *e, 0);
    *e = *src;
    lua_pushcclosure(L, onerror_c, 1);
  }
  lua_call(L, 1, 0);
  return 0;
}

void tsk_onerror(lua_State *L, tsk_ErrorCb cb, void *ud) {
  ErrHandler e;
  e.cb = cb;
  e.ud = ud;
  lua_pushcfunction(L, onerror_p);
  lua_pushlightuserdata(L, &e);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) lua_pop(L, 1);
}

/* --- xchannels from C ----------------------------------------------- */

int tsk_xchannel_send(tsk_XChannel *x, const tsk_Value *v, double timeout) {
  tsk_Msg *m;
  if (v->type > TSK_VSTRING || (v->type == TSK_VSTRING && v->string == NULL && v->len))
    return UV_EINVAL;
  m = tsk_msg_fromvalue(v);
  if (m == NULL) return UV_ENOMEM;
  return tsk_xchannel_sendmsg(x, m, timeout);
}

int tsk_xchannel_send_bytes(tsk_XChannel *x, const void *p, size_t len,
                            double timeout) {
  tsk_Msg *m;
  if (p == NULL && len > 0) return UV_EINVAL;
  m = tsk_msg_string(p, len);
  if (m == NULL) return UV_ENOMEM;
  return tsk_xchannel_sendmsg(x, m, timeout);
}

int tsk_xchannel_recv(tsk_XChannel *x, tsk_Value *v, double timeout) {
  tsk_Msg *m;
  int r;
  memset(v, 0, sizeof *v);
  v->type = TSK_VNIL;
  r = tsk_xchannel_recvmsg(x, &m, timeout);
  if (r != 0) return r;
  r = tsk_msg_tovalue(m, v);
  tsk_msg_free(m);
  return r;
}

int tsk_xchannel_recv_bytes(tsk_XChannel *x, void **p, size_t *len,
                            double timeout) {
  tsk_Value v;
  int r = tsk_xchannel_recv(x, &v, timeout);
  *p = NULL;
  *len = 0;
  if (r != 0) return r;
  if (v.type != TSK_VSTRING) {
    tsk_value_free(&v);
    return UV_EINVAL;
  }
  *p = (void *)(uintptr_t)v.string;
  *len = v.len;
  return 0;
}

void tsk_value_free(tsk_Value *v) {
  if (v->type == TSK_VSTRING) free((void *)(uintptr_t)v->string);
  memset(v, 0, sizeof *v);
  v->type = TSK_VNIL;
}
