/*
** tasklet.c: tasklets as Lua objects: spawn, join, kill, status, name.
** A tasklet is a userdata (the tsk_Tasklet) with one user value (see
** X_IS*): its coroutine, or once it failed its error, or once it got a
** name or a kill reason a table of the three. While it is not dead the
** registry holds it, so a blocked tasklet lives on. A dead one may give
** its coroutine to the pool (S->pool) for the next spawn: then t->L is
** NULL and the coroutine's slot nil.
*/
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "core.h"

static const char *const statusnames[] = {"ready", "running", "blocked", "dead"};

static const char *const waitnames[] = {
  NULL, "sleep", "yield", "join", "channel", "socket", "dns", "thread",
  "work", "select", "other"
};

/* What a tasklet's one user value is (t->xkind). One value, not three,
** as most tasklets never get a name or an error: 32 bytes less each. */
enum {
  X_ISCO,   /* its coroutine (nil once pooled) */
  X_ISERR,  /* dead and failed, without a table: its error */
  X_ISTAB   /* a table: [X_CO] coroutine, [X_NAME] name, [X_ERR] error or
               kill reason; made with its array part, so setting a slot
               never allocates */
};
enum { X_CO = 1, X_NAME = 2, X_ERR = 3 };

/* Push field k (X_NAME, X_ERR) of the tasklet t at idx, or nil. */
static void getx(lua_State *L, int idx, tsk_Tasklet *t, int k) {
  if (t->xkind == X_ISTAB) {
    lua_getiuservalue(L, idx, 1);
    lua_rawgeti(L, -1, k);
    lua_remove(L, -2);
  }
  else if (t->xkind == X_ISERR && k == X_ERR)
    lua_getiuservalue(L, idx, 1);
  else
    lua_pushnil(L);
}

/* Set field k of the tasklet t at idx to the value on top (popped). May
** make the table: from Lua-called functions only (it may raise). */
static void setx(lua_State *L, int idx, tsk_Tasklet *t, int k) {
  idx = lua_absindex(L, idx);
  if (t->xkind != X_ISTAB) {
    if (lua_isnil(L, -1)) {  /* nothing to keep: no table for it */
      lua_pop(L, 1);
      return;
    }
    lua_createtable(L, 3, 0);
    lua_getiuservalue(L, idx, 1);
    lua_rawseti(L, -2, t->xkind == X_ISERR ? X_ERR : X_CO);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, idx, 1);
    t->xkind = X_ISTAB;
  }
  else
    lua_getiuservalue(L, idx, 1);
  lua_rotate(L, -2, 1);
  lua_rawseti(L, -2, k);
  lua_pop(L, 1);
}

/* Let go of t's coroutine (the tasklet at idx of L). */
static void dropco(lua_State *L, int idx, tsk_Tasklet *t) {
  idx = lua_absindex(L, idx);
  if (t->xkind == X_ISTAB) {
    lua_getiuservalue(L, idx, 1);
    lua_pushnil(L);
    lua_rawseti(L, -2, X_CO);
    lua_pop(L, 1);
  }
  else if (t->xkind == X_ISCO) {
    lua_pushnil(L);
    lua_setiuservalue(L, idx, 1);
  }  /* X_ISERR: the error holds the place already */
  t->L = NULL;
}

/*
** A live tasklet is held by S->anchors (a registry ref; the table is also
** at index 1 of S->pool's stack, where a finish reaches it with no
** look-up), at slot t->ref. Slots are in chunks of ACHUNK, each a table
** made to that size at once (anchors[k] holds slots (k-1)*ACHUNK+1 ...):
** one table growing by doubling would average 1.5 slots per tasklet,
** 10 bytes more for each of 10,000 connections. The free slots form a
** list through them (each holds the next one's number, S->afree the
** first), as luaL_ref's do in the registry, without its look-ups of the
** list's head and of the table's length. The strings of writes in flight
** are held there too (tcp.c): the only userdata in it are tasklets.
*/
#define ACHUNK 1024

/* Push the chunk of slot ref of the anchors at idx; its index in it. */
static int pushchunk(lua_State *L, int idx, int ref) {
  lua_rawgeti(L, idx, (ref - 1) / ACHUNK + 1);
  return (ref - 1) % ACHUNK + 1;
}

int tsk_anchor(lua_State *L, tsk_Sched *S) {
  int ref, i;
  if (S->anchors <= 0) luaL_error(L, "tasksock.core is not open in this state");
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->anchors);  /* v A */
  if (S->afree != 0) {
    ref = S->afree;
    i = pushchunk(L, -1, ref);                    /* v A C */
    lua_rawgeti(L, -1, i);
    S->afree = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  else {
    if (S->atop > INT_MAX - ACHUNK) luaL_error(L, "too many tasklets and writes in flight");
    ref = S->atop + 1;
    i = pushchunk(L, -1, ref);
    if (i == 1) {  /* a new chunk: raises (out of memory) before it counts */
      lua_pop(L, 1);
      lua_createtable(L, ACHUNK, 0);
      lua_pushvalue(L, -1);
      lua_rawseti(L, -3, (ref - 1) / ACHUNK + 1);
    }
  }
  lua_rotate(L, -3, -1);                          /* A C v */
  lua_rawseti(L, -2, i);  /* the slot exists: allocates nothing */
  lua_pop(L, 2);
  if (ref > S->atop) S->atop = ref;
  return ref;
}

/* Allocates nothing (the slot exists), so it works on S->pool's stack;
** without room there (out of memory) the slot stays taken. */
void tsk_unanchor(tsk_Sched *S, int ref) {
  if (ref > 0 && lua_checkstack(S->pool, 2)) {
    int i = pushchunk(S->pool, 1, ref);
    lua_pushinteger(S->pool, S->afree);
    lua_rawseti(S->pool, -2, i);
    lua_pop(S->pool, 1);
    S->afree = ref;
  }
}

tsk_Tasklet *tsk_tasklet_next(lua_State *L, tsk_Sched *S, int *slot) {
  tsk_Tasklet *t = NULL;
  if (S->anchors <= 0) return NULL;
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->anchors);
  while (t == NULL && *slot < S->atop) {  /* free slots hold integers */
    int i = pushchunk(L, -1, ++*slot);
    if (lua_rawgeti(L, -1, i) == LUA_TUSERDATA)
      t = (tsk_Tasklet *)lua_touserdata(L, -1);
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
  return t;
}

/* Push the value at slot ref of the anchors at idx. */
static void pushanchored(lua_State *L, int idx, int ref) {
  int i = pushchunk(L, idx, ref);
  lua_rawgeti(L, -1, i);
  lua_remove(L, -2);
}

/* Push t's userdata (while t is not dead; nil after). */
static void pushtasklet(lua_State *L, tsk_Tasklet *t) {
  if (t->ref <= 0) {
    lua_pushnil(L);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->S->anchors);
  pushanchored(L, -1, t->ref);
  lua_remove(L, -2);
}

/* (core.h) */
void tsk_tasklet_reason(lua_State *L, tsk_Tasklet *t) {
  pushtasklet(L, t);
  getx(L, -1, t, X_ERR);
  lua_remove(L, -2);
}

static tsk_Tasklet *checktasklet(lua_State *L, int arg) {
  return (tsk_Tasklet *)luaL_checkudata(L, arg, TSK_TASKLET_MT);
}


const char *tsk_tasklet_name(lua_State *L, tsk_Tasklet *t) {
  const char *name;
  if (t->ismain) return "main";
  pushtasklet(L, t);
  getx(L, -1, t, X_NAME);
  name = lua_tostring(L, -1);
  lua_pop(L, 2);  /* the name stays alive in the user value's table */
  return name ? name : "?";
}

/* Report a failed tasklet (its error on top of its dead coroutine) to the
** error handler, or to stderr. */
static void report(tsk_Sched *S, tsk_Tasklet *t) {
  lua_State *L = S->L, *co = t->L;
  const char *msg;
  int top = lua_gettop(L);
  lua_checkstack(L, 8);
  lua_checkstack(co, 2);
  lua_pushvalue(co, -1);
  lua_xmove(co, L, 1);                     /* err */
  msg = lua_tostring(L, -1);
  if (msg == NULL) {
    if (luaL_callmeta(L, -1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      msg = lua_tostring(L, -1);
    else
      msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, top + 1));
  }
  luaL_traceback(L, co, msg, 0);           /* err [msg] tb */
  if (S->errref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, S->errref);
    pushtasklet(L, t);
    lua_pushvalue(L, top + 1);
    lua_pushvalue(L, -4);                  /* err [msg] tb h t err tb */
    if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
      fprintf(stderr, "tasksock: error handler failed: %s\n",
              lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
      fflush(stderr);
    }
  }
  else {
    const char *name = tsk_tasklet_name(L, t);
    fprintf(stderr, "tasksock: tasklet '%s' failed: %s\n", name, lua_tostring(L, -1));
    fflush(stderr);
  }
  lua_settop(L, top);
}

/* Keep the dead t's coroutine, its stack empty, for a new tasklet; t lets
** go of it. Not when its results wait there for join, when Lua code may
** hold it (t->exposed) or when the pool is full. */
static void pool(tsk_Sched *S, tsk_Tasklet *t) {
  lua_State *co = t->L;
  if (t->exposed || t->nres > 0 || S->npool >= TSK_POOL_MAX || S->closing ||
      !lua_checkstack(S->pool, 4) || !lua_checkstack(co, 1))
    return;
  lua_settop(co, 0);
  lua_pushthread(co);
  lua_xmove(co, S->pool, 1);  /* the pool holds it now */
  S->npool++;
  pushanchored(S->pool, 1, t->ref);  /* t (the anchors are at 1) */
  dropco(S->pool, -1, t);
  lua_pop(S->pool, 1);
}

/* A coroutine for a new tasklet, pushed on L: a pooled one, or new. It
** gets L's hook, as lua_newthread would give it. */
static lua_State *newcoroutine(lua_State *L, tsk_Sched *S) {
  lua_State *co;
  if (S->npool == 0) return lua_newthread(L);
  lua_xmove(S->pool, L, 1);
  S->npool--;
  co = lua_tothread(L, -1);
  lua_sethook(co, lua_gethook(L), lua_gethookmask(L), lua_gethookcount(L));
  return co;
}

void tsk_tasklet_finish(tsk_Sched *S, tsk_Tasklet *t, int ok, int nres) {
  lua_State *co = t->L;
  int anchor = -1;  /* S->L's top below co, while S->L anchors co */
  t->status = TSK_DEAD;
  t->ok = ok != 0;
  t->killing = 0;
  S->ntasklets--;
  if (ok)
    t->nres = nres;  /* the results stay on its stack for join */
  else {
    int iskill;
    lua_checkstack(co, 4);
    pushtasklet(co, t);
    getx(co, -1, t, X_ERR);                /* err t reason */
    iskill = t->killed && tsk_samevalue(co, -1, -3);
    lua_pop(co, 1);
    lua_pushvalue(co, -2);                 /* err t err */
    if (t->xkind == X_ISTAB)
      setx(co, -2, t, X_ERR);              /* its slot: no allocation */
    else if (lua_checkstack(S->L, 1)) {    /* the error takes the user */
      anchor = lua_gettop(S->L);           /* value, the coroutine is */
      lua_pushthread(co);                  /* held by S->L meanwhile */
      lua_xmove(co, S->L, 1);
      lua_setiuservalue(co, -2, 1);
      t->xkind = X_ISERR;
    }
    else
      lua_pop(co, 1);                      /* (lost: no stack for it) */
    lua_pop(co, 1);
    if (!iskill) report(S, t);
    tsk_closethread(co, S->L);             /* run its to-be-closed variables */
    lua_settop(co, 0);
    t->nres = 0;
  }
  tsk_queue_wakeall(&t->joiners, TSK_WOK);
  pool(S, t);
  if (anchor >= 0) {  /* pooled, or let go of */
    lua_settop(S->L, anchor);
    t->L = NULL;
  }
  tsk_unanchor(S, t->ref);
  t->ref = LUA_NOREF;
}

/* tsk_spawn with the tasklet metatable at index mt (0: look it up). */
static tsk_Tasklet *spawn(lua_State *L, tsk_Sched *S, int n, int mt) {
  int base = lua_gettop(L) - n + 1;        /* fn args... */
  tsk_Tasklet *t;
  lua_State *co = newcoroutine(L, S);
  if (!lua_checkstack(co, n)) luaL_error(L, "too many arguments to spawn");
  lua_rotate(L, base, 1);                  /* co fn args... */
  lua_xmove(L, co, n);                     /* co */
  t = (tsk_Tasklet *)lua_newuserdatauv(L, sizeof *t, 1);
  memset(t, 0, sizeof *t);
  if (mt != 0) {
    lua_pushvalue(L, mt);
    lua_setmetatable(L, -2);
  }
  else
    luaL_setmetatable(L, TSK_TASKLET_MT);
  lua_rotate(L, -2, 1);                    /* t co */
  lua_setiuservalue(L, -2, 1);             /* t (xkind X_ISCO) */
  t->L = co;
  t->S = S;
  t->heapidx = -1;
  t->nargs = n - 1;
  lua_pushvalue(L, -1);
  t->ref = tsk_anchor(L, S);
  S->ntasklets++;
  S->spawned++;
  tsk_ready(t);
  return t;
}

tsk_Tasklet *tsk_spawn(lua_State *L, tsk_Sched *S, int n) {
  return spawn(L, S, n, 0);
}

/* spawn(fn, ...): a new tasklet, ready to run fn(...). Upvalues: the
** scheduler, the tasklet metatable (no registry look-up per spawn). */
static int global_spawn(lua_State *L) {
  if (lua_type(L, 1) != LUA_TFUNCTION) {
    if (!luaL_getmetafield(L, 1, "__call"))
      return luaL_typeerror(L, 1, "function");
    lua_pop(L, 1);
  }
  spawn(L, tsk_upsched(L), lua_gettop(L), lua_upvalueindex(2));
  return 1;
}

static int global_current(lua_State *L) {
  tsk_Sched *S = tsk_upsched(L);
  if (S->current == NULL) return 0;
  pushtasklet(L, S->current);
  return 1;
}

/* Push what join returns for the dead tasklet t (its userdata at 1). */
static int joinresults(lua_State *L, tsk_Tasklet *t) {
  int i;
  if (!t->ok) {
    lua_pushboolean(L, 0);
    getx(L, 1, t, X_ERR);
    return 2;
  }
  if (!lua_checkstack(L, t->nres + 1)) return luaL_error(L, "too many results to join");
  lua_pushboolean(L, 1);
  if (t->nres == 0) return 1;  /* its coroutine may be pooled (t->L NULL) */
  for (i = 0; i < t->nres; i++) lua_pushvalue(t->L, -t->nres);
  lua_xmove(t->L, L, t->nres);
  return t->nres + 1;
}

static int joink(lua_State *L, int status, lua_KContext ctx) {
  tsk_Tasklet *t = (tsk_Tasklet *)ctx;
  tsk_Tasklet *self = tsk_self(t->S);
  (void)status;
  if (self->wresult == TSK_WTIMEOUT) return tsk_fail(L, "timeout");
  return joinresults(L, t);
}

/* t:join([timeout]): true, results... | false, err | nil, "timeout" */
static int meth_join(lua_State *L) {
  tsk_Tasklet *t = checktasklet(L, 1);
  double timeout = tsk_opttimeout(L, 2);
  tsk_Sched *S = t->S;
  tsk_Tasklet *self;
  lua_settop(L, 1);
  if (t->status == TSK_DEAD) return joinresults(L, t);
  self = tsk_self(S);
  if (self == t) return luaL_error(L, "a tasklet cannot join itself");
  if (timeout == 0) return tsk_fail(L, "timeout");
  tsk_checkblock(L, S);
  tsk_queue_push(&t->joiners, self);
  self->won = TSK_ON_JOIN;
  self->wobj = t;
  return tsk_wait(L, self, timeout, (lua_KContext)t, joink);
}

/* t:kill([reason]): raise reason (default "killed") in t where it waits.
** true if t was alive. */
static int meth_kill(lua_State *L) {
  tsk_Tasklet *t = checktasklet(L, 1);
  tsk_Sched *S = t->S;
  if (t->status == TSK_DEAD) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (lua_isnoneornil(L, 2)) lua_pushliteral(L, "killed");
  else lua_pushvalue(L, 2);
  setx(L, 1, t, X_ERR);
  t->killed = 1;
  switch (t->status) {
    case TSK_RUNNING:  /* itself */
      getx(L, 1, t, X_ERR);
      t->killing = 1;
      return lua_error(L);
    case TSK_BLOCKED: {
      void (*cancel)(tsk_Tasklet *) = t->wcancel;
      tsk_queue_remove(t);
      t->wcancel = NULL;
      t->kill = TSK_KILL_NOW;
      tsk_wake(t, TSK_WOK, NULL, 0);  /* unlinks the timer, queues it */
      if (cancel) cancel(t);
      break;
    }
    default:  /* ready */
      if (!t->started) {  /* never ran: it dies without running */
        tsk_queue_remove(t);
        lua_settop(t->L, 0);
        getx(L, 1, t, X_ERR);
        lua_xmove(L, t->L, 1);
        tsk_tasklet_finish(S, t, 0, 1);
      }
      else if (t->nargs > 0)
        /* its wait is over and delivered values (a channel's message, a
        ** thread's results) that are its own now, and nobody else's: let
        ** the call return them, and raise at its next blocking call */
        t->kill = TSK_KILL_LATER;
      else
        t->kill = TSK_KILL_NOW;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int meth_status(lua_State *L) {
  tsk_Tasklet *t = checktasklet(L, 1);
  lua_pushstring(L, statusnames[t->status]);
  return 1;
}

static int meth_index(lua_State *L) {
  tsk_Tasklet *t = checktasklet(L, 1);
  const char *k = lua_tostring(L, 2);
  if (k != NULL && strcmp(k, "name") == 0) {
    getx(L, 1, t, X_NAME);
    return 1;
  }
  if (k != NULL && strcmp(k, "waiting") == 0) {  /* what it waits on */
    if (t->status == TSK_BLOCKED && t->won != TSK_ON_NOTHING)
      lua_pushstring(L, waitnames[t->won]);
    else
      lua_pushnil(L);
    return 1;
  }
  lua_getmetatable(L, 1);
  lua_getfield(L, -1, "__methods");
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

static int meth_newindex(lua_State *L) {
  tsk_Tasklet *t = checktasklet(L, 1);
  if (lua_type(L, 2) != LUA_TSTRING || strcmp(lua_tostring(L, 2), "name") != 0)
    return luaL_argerror(L, 2, "only 'name' can be set on a tasklet");
  if (!lua_isnil(L, 3)) luaL_checktype(L, 3, LUA_TSTRING);
  lua_settop(L, 3);
  setx(L, 1, t, X_NAME);
  return 0;
}

static int meth_tostring(lua_State *L) {
  tsk_Tasklet *t = checktasklet(L, 1);
  getx(L, 1, t, X_NAME);
  if (lua_isnil(L, -1))
    lua_pushfstring(L, "tasklet (%s): %p", statusnames[t->status], (void *)t);
  else
    lua_pushfstring(L, "tasklet '%s' (%s): %p", lua_tostring(L, -1),
                    statusnames[t->status], (void *)t);
  return 1;
}

/* tasklets(): a table per live tasklet: tasklet, name, status, waiting
** (what on), since (seconds it has waited). */
static int global_tasklets(lua_State *L) {
  tsk_Sched *S = tsk_upsched(L);
  tsk_Tasklet *t;
  lua_Integer i = 0;
  int slot = 0;
  uint64_t now;
  uv_update_time(S->loop);
  now = uv_now(S->loop);
  lua_createtable(L, (int)S->ntasklets, 0);
  while ((t = tsk_tasklet_next(L, S, &slot)) != NULL) {
    lua_createtable(L, 0, 5);
    pushtasklet(L, t);
    getx(L, -1, t, X_NAME);
    lua_setfield(L, -3, "name");
    lua_setfield(L, -2, "tasklet");
    lua_pushstring(L, statusnames[t->status]);
    lua_setfield(L, -2, "status");
    if (t->status == TSK_BLOCKED) {
      if (t->won != TSK_ON_NOTHING) {
        lua_pushstring(L, waitnames[t->won]);
        lua_setfield(L, -2, "waiting");
      }
      lua_pushnumber(L, (double)(uint32_t)((uint32_t)now - t->wsince) * 1e-3);
      lua_setfield(L, -2, "since");
    }
    lua_rawseti(L, -2, ++i);
  }
  return 1;
}

/* traceback(t[, msg]): where t is: its innermost blocked frame. */
static int global_traceback(lua_State *L) {
  tsk_Tasklet *t = checktasklet(L, 1);
  const char *msg = luaL_optstring(L, 2, NULL);
  lua_State *co = t->status == TSK_BLOCKED && t->wL ? t->wL : t->L;
  if (t->status == TSK_RUNNING) co = L;
  if (co == NULL)  /* dead, its coroutine pooled: an empty traceback */
    luaL_traceback(L, L, msg, INT_MAX);
  else
    luaL_traceback(L, co, msg, co == L ? 1 : 0);
  return 1;
}

static void setcount(lua_State *L, const char *k, uint64_t v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}

/* stats(): counts of tasklets, switches, sockets, bytes. */
static int global_stats(lua_State *L) {
  tsk_Sched *S = tsk_upsched(L);
  lua_createtable(L, 0, 9);
  setcount(L, "tasklets", (uint64_t)S->ntasklets);
  setcount(L, "ready", (uint64_t)tsk_queue_count(&S->runq));
  setcount(L, "timers", (uint64_t)S->nheap);
  setcount(L, "spawned", S->spawned);
  setcount(L, "switches", S->switches);
  setcount(L, "sockets", (uint64_t)S->nsockets);
  setcount(L, "pooled", (uint64_t)S->npool);
  setcount(L, "bytesin", S->bytesin);
  setcount(L, "bytesout", S->bytesout);
  return 1;
}

void tsk_tasklet_open(lua_State *L) {
  static const luaL_Reg meths[] = {
    {"join", meth_join},
    {"kill", meth_kill},
    {"status", meth_status},
    {NULL, NULL}
  };
  static const luaL_Reg metas[] = {
    {"__index", meth_index},
    {"__newindex", meth_newindex},
    {"__tostring", meth_tostring},
    {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"current", global_current},
    {"tasklets", global_tasklets},
    {"traceback", global_traceback},
    {"stats", global_stats},
    {NULL, NULL}
  };
  tsk_Sched *S = tsk_sched(L);
  if (S->anchors <= 0) {  /* (the pool is empty: nothing was spawned) */
    lua_newtable(L);
    lua_pushvalue(L, -1);
    S->anchors = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_xmove(L, S->pool, 1);  /* at 1, under the pooled coroutines */
  }
  luaL_newmetatable(L, TSK_TASKLET_MT);
  luaL_setfuncs(L, metas, 0);
  lua_newtable(L);
  luaL_setfuncs(L, meths, 0);
  lua_setfield(L, -2, "__methods");
  lua_pushlightuserdata(L, S);              /* mt S */
  lua_rotate(L, -2, 1);                     /* S mt */
  lua_pushcclosure(L, global_spawn, 2);
  lua_setfield(L, -2, "spawn");
  tsk_setfuncs(L, S, funcs);
}
