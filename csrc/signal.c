/*
** signal.c: ts.signal(name, fn): POSIX signals handled on the loop. Each
** time the signal arrives, fn(name) runs in a new tasklet. One uv_signal_t
** per signal number, malloc'd and freed in its close callback; the Lua side
** (handlers by number) lives in a registry table.
*/
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define SIGNALS_KEY "tasksock.signals"  /* signum -> {fn, name, handle} */

typedef struct Watch {
  uv_signal_t h;
  tsk_Sched *S;
  int signum;
} Watch;

static const struct { const char *name; int num; } names[] = {
  {"SIGINT", SIGINT}, {"SIGTERM", SIGTERM}, {"SIGHUP", SIGHUP},
  {"SIGQUIT", SIGQUIT}, {"SIGUSR1", SIGUSR1}, {"SIGUSR2", SIGUSR2},
  {"SIGWINCH", SIGWINCH}, {"SIGCHLD", SIGCHLD}, {"SIGPIPE", SIGPIPE},
  {"SIGALRM", SIGALRM}, {"SIGCONT", SIGCONT}, {NULL, 0}
};

/* The signal number for arg ("SIGINT", "INT", "int" or a number); pushes
** its canonical name ("SIGINT"), or the number when it has no name here. */
static int checksignal(lua_State *L, int arg) {
  const char *s;
  int i;
  if (lua_type(L, arg) == LUA_TNUMBER) {
    lua_Integer n = luaL_checkinteger(L, arg);
    luaL_argcheck(L, n > 0 && n < 65, arg, "no such signal");
    for (i = 0; names[i].name != NULL; i++)
      if (names[i].num == n) break;
    if (names[i].name != NULL) lua_pushstring(L, names[i].name);
    else lua_pushinteger(L, n);
    return (int)n;
  }
  s = luaL_checkstring(L, arg);
  if (strncmp(s, "SIG", 3) == 0 || strncmp(s, "sig", 3) == 0) s += 3;
  for (i = 0; names[i].name != NULL; i++) {
    const char *n = names[i].name + 3, *p = s;
    while (*n && (*p == *n || *p == *n + ('a' - 'A'))) n++, p++;
    if (*n == '\0' && *p == '\0') {
      lua_pushstring(L, names[i].name);
      return names[i].num;
    }
  }
  return luaL_argerror(L, arg, lua_pushfstring(L, "unknown signal '%s'", lua_tostring(L, arg)));
}

static void close_cb(uv_handle_t *h) { free(h->data); }

static void signal_cb(uv_signal_t *h, int signum) {
  Watch *w = (Watch *)h->data;
  lua_State *L = w->S->L;
  int top = lua_gettop(L);
  if (w->S->closing) return;
  lua_getfield(L, LUA_REGISTRYINDEX, SIGNALS_KEY);
  if (lua_rawgeti(L, -1, signum) == LUA_TTABLE) {
    lua_rawgeti(L, -1, 1);                 /* fn */
    lua_rawgeti(L, -2, 2);                 /* name */
    tsk_spawn(L, w->S, 2);
  }
  lua_settop(L, top);
}

/* signal(name, fn | nil): run fn(name) in a tasklet on each arrival of
** the signal; nil stops watching it. Returns the previous function. */
static int global_signal(lua_State *L) {
  tsk_Sched *S = tsk_upsched(L);
  int signum;
  Watch *w = NULL;
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  signum = checksignal(L, 1);                           /* 3: name */
  lua_getfield(L, LUA_REGISTRYINDEX, SIGNALS_KEY);      /* 4: signals */
  if (lua_rawgeti(L, 4, signum) == LUA_TTABLE) {        /* 5: entry */
    lua_rawgeti(L, 5, 3);
    w = (Watch *)lua_touserdata(L, -1);
    lua_pop(L, 1);
    lua_rawgeti(L, 5, 1);                               /* 6: old fn */
  }
  else
    lua_pushnil(L);
  if (lua_isnil(L, 2)) {                                /* stop watching */
    if (w != NULL) {
      uv_close((uv_handle_t *)&w->h, close_cb);
      lua_pushnil(L);
      lua_rawseti(L, 4, signum);
    }
    return 1;
  }
  if (w == NULL) {
    int r;
    w = (Watch *)malloc(sizeof *w);
    if (w == NULL) return luaL_error(L, "not enough memory");
    w->S = S;
    w->signum = signum;
    if ((r = uv_signal_init(S->loop, &w->h)) != 0) {
      free(w);
      return luaL_error(L, "cannot watch signal %d: %s", signum, uv_strerror(r));
    }
    w->h.data = w;
    if ((r = uv_signal_start(&w->h, signal_cb, signum)) != 0) {
      uv_close((uv_handle_t *)&w->h, close_cb);
      return luaL_error(L, "cannot watch signal %d: %s", signum, uv_strerror(r));
    }
  }
  lua_createtable(L, 3, 0);                             /* the new entry */
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, 3);
  lua_rawseti(L, -2, 2);
  lua_pushlightuserdata(L, w);
  lua_rawseti(L, -2, 3);
  lua_rawseti(L, 4, signum);
  return 1;                                             /* the old fn */
}

/* Close the watchers when the state closes (the scheduler's loop runs
** their close callbacks). */
static int signals_gc(lua_State *L) {
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    if (lua_type(L, -1) == LUA_TTABLE) {
      Watch *w;
      lua_rawgeti(L, -1, 3);
      w = (Watch *)lua_touserdata(L, -1);
      if (w != NULL && !uv_is_closing((uv_handle_t *)&w->h))
        uv_close((uv_handle_t *)&w->h, close_cb);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  return 0;
}

void tsk_signal_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"signal", global_signal},
    {NULL, NULL}
  };
  tsk_Sched *S = tsk_sched(L);
  if (lua_getfield(L, LUA_REGISTRYINDEX, SIGNALS_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, signals_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, SIGNALS_KEY);
  }
  else
    lua_pop(L, 1);
  tsk_setfuncs(L, S, funcs);
}
