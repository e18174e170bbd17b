/*
** channel.c: Stackless-style channels between tasklets of one Lua state.
** Capacity 0 is a rendezvous: a sender waits until a receiver takes its
** value, and the reverse. With a capacity, up to that many values wait in
** a ring kept in the channel's user value (a table indexed 1..capacity).
** A blocked sender's value stays in its own C frame (argument 2) until a
** receiver copies it from there.
*/
#include <string.h>

#include "core.h"

typedef struct Channel {
  const char *tag;        /* &channeltag */
  tsk_Sched *S;
  tsk_Queue senders, receivers;
  lua_Integer capacity;   /* 0: rendezvous */
  lua_Integer head, count; /* the ring: first slot (0-based) and fill */
  int closed;
} Channel;

/* Its address marks a Channel: a constant, the same in every Lua state. */
static const char channeltag = 0;

/* The channel at arg. Send and receive check their channel on every call,
** so the common case costs no Lua stack traffic: a full userdata of a
** channel's exact size that starts with the address of channeltag (which
** no Lua value reveals) is one. Anything else gets the full check against
** the metatable (method upvalue 1), which raises unless it is a channel. */
TSK_INLINE Channel *checkchannel(lua_State *L, int arg) {
  Channel *c = (Channel *)lua_touserdata(L, arg);
  if (c != NULL && lua_rawlen(L, arg) == sizeof *c && c->tag == &channeltag)
    return c;
  return (Channel *)tsk_checkudata(L, arg, 1, TSK_CHANNEL_MT);
}

/* An optional timeout: absent (the common case) costs no type check. */
#define opttimeout(L, arg) \
  (lua_gettop(L) < (arg) ? -1.0 : tsk_opttimeout((L), (arg)))

/* Push the value a blocked sender offers (argument 2 of its frame). */
static void takefrom(lua_State *L, tsk_Tasklet *s) {
  lua_checkstack(s->wL, 1);
  lua_pushvalue(s->wL, 2);
  lua_xmove(s->wL, L, 1);
}

/* Append the value on top of L to the ring (channel at 1); pops it. */
static void ringpush(lua_State *L, Channel *c) {
  lua_getiuservalue(L, 1, 1);
  lua_insert(L, -2);
  lua_rawseti(L, -2, (c->head + c->count) % c->capacity + 1);
  lua_pop(L, 1);
  c->count++;
}

/* Push the first value of the ring and drop it from there. */
static void ringpop(lua_State *L, Channel *c) {
  lua_getiuservalue(L, 1, 1);
  lua_rawgeti(L, -1, c->head + 1);
  lua_pushnil(L);
  lua_rawseti(L, -3, c->head + 1);
  lua_remove(L, -2);
  c->head = (c->head + 1) % c->capacity;
  c->count--;
}

static int waitresult(lua_State *L, tsk_Tasklet *t) {
  return tsk_fail(L, t->wresult == TSK_WTIMEOUT ? "timeout" : "closed");
}

static int sendk(lua_State *L, int status, lua_KContext ctx) {
  Channel *c = (Channel *)ctx;
  tsk_Tasklet *t = tsk_self(c->S);
  (void)status;
  if (t->wresult != TSK_WOK) return waitresult(L, t);
  lua_pushboolean(L, 1);
  return 1;
}

/* ch:send(v[, timeout]): true | nil, "closed" | nil, "timeout" */
static int meth_send(lua_State *L) {
  Channel *c = checkchannel(L, 1);
  int top = lua_gettop(L);
  double timeout = top < 3 ? -1.0 : tsk_opttimeout(L, 3);
  tsk_Tasklet *r, *t;
  if (top < 2) luaL_argerror(L, 2, "value expected");
  if (c->closed) return tsk_fail(L, "closed");
  if ((r = tsk_queue_pop(&c->receivers)) != NULL) {  /* hand it over */
    if (top != 2) lua_pushvalue(L, 2);  /* else it is on top: move it */
    if (r->wL == r->L) {  /* its receive's frame has room (LUA_MINSTACK) */
      lua_xmove(L, r->L, 1);
      tsk_wake(r, TSK_WOK, r->L, 1);
    }
    else
      tsk_wake(r, TSK_WOK, L, 1);
    lua_pushboolean(L, 1);
    return 1;
  }
  if (c->count < c->capacity) {
    lua_pushvalue(L, 2);
    ringpush(L, c);
    lua_pushboolean(L, 1);
    return 1;
  }
  if (timeout == 0) return tsk_fail(L, "timeout");
  t = tsk_self(c->S);  /* tsk_wait raises (and unlinks t) if L cannot block */
  tsk_queue_push(&c->senders, t);
  t->won = TSK_ON_CHANNEL;
  t->wobj = c;
  return tsk_wait(L, t, timeout, (lua_KContext)c, sendk);
}

static int receivek(lua_State *L, int status, lua_KContext ctx) {
  Channel *c = (Channel *)ctx;
  tsk_Tasklet *t = tsk_self(c->S);
  (void)status;
  if (t->wresult != TSK_WOK) return waitresult(L, t);
  return 1;  /* the value, delivered on top */
}

/* ch:receive([timeout]): v | nil, "closed" | nil, "timeout" */
static int meth_receive(lua_State *L) {
  Channel *c = checkchannel(L, 1);
  double timeout = opttimeout(L, 2);
  tsk_Tasklet *s, *t;
  if (c->count > 0) {
    ringpop(L, c);
    if ((s = tsk_queue_pop(&c->senders)) != NULL) {  /* its value fills the slot */
      takefrom(L, s);
      ringpush(L, c);
      tsk_wake(s, TSK_WOK, NULL, 0);
    }
    return 1;
  }
  if ((s = tsk_queue_pop(&c->senders)) != NULL) {
    takefrom(L, s);
    tsk_wake(s, TSK_WOK, NULL, 0);
    return 1;
  }
  if (c->closed) return tsk_fail(L, "closed");
  if (timeout == 0) return tsk_fail(L, "timeout");
  t = tsk_self(c->S);  /* tsk_wait raises (and unlinks t) if L cannot block */
  tsk_queue_push(&c->receivers, t);
  t->won = TSK_ON_CHANNEL;
  t->wobj = c;
  return tsk_wait(L, t, timeout, (lua_KContext)c, receivek);
}

/* ch:close(): wakes every waiter with nil, "closed"; values already
** buffered can still be received. */
static int meth_close(lua_State *L) {
  Channel *c = checkchannel(L, 1);
  c->closed = 1;
  tsk_queue_wakeall(&c->senders, TSK_WCLOSED);
  tsk_queue_wakeall(&c->receivers, TSK_WCLOSED);
  lua_pushboolean(L, 1);
  return 1;
}

/* ch:balance(): waiting senders minus waiting receivers. */
static int meth_balance(lua_State *L) {
  Channel *c = checkchannel(L, 1);
  lua_pushinteger(L, tsk_queue_count(&c->senders) - tsk_queue_count(&c->receivers));
  return 1;
}

static int meth_count(lua_State *L) {
  Channel *c = checkchannel(L, 1);
  lua_pushinteger(L, c->count);
  return 1;
}

static int meth_closed(lua_State *L) {
  Channel *c = checkchannel(L, 1);
  lua_pushboolean(L, c->closed);
  return 1;
}

static int meth_tostring(lua_State *L) {
  Channel *c = checkchannel(L, 1);
  lua_pushfstring(L, "channel (%I/%I%s): %p", (LUAI_UACINT)c->count,
                  (LUAI_UACINT)c->capacity, c->closed ? ", closed" : "", (void *)c);
  return 1;
}

/* A channel nobody holds can have no waiter: they hold it on their stack. */

static int global_channel(lua_State *L) {
  tsk_Sched *S = tsk_upsched(L);
  lua_Integer cap = luaL_optinteger(L, 1, 0);
  Channel *c;
  luaL_argcheck(L, cap >= 0, 1, "capacity must not be negative");
  c = (Channel *)lua_newuserdatauv(L, sizeof *c, 1);
  memset(c, 0, sizeof *c);
  c->tag = &channeltag;
  c->S = S;
  c->capacity = cap;
  luaL_setmetatable(L, TSK_CHANNEL_MT);
  if (cap > 0) {
    lua_createtable(L, cap < 64 ? (int)cap : 0, 0);
    lua_setiuservalue(L, -2, 1);
  }
  return 1;
}

void tsk_channel_open(lua_State *L) {
  static const luaL_Reg meths[] = {
    {"send", meth_send},
    {"receive", meth_receive},
    {"close", meth_close},
    {"balance", meth_balance},
    {"count", meth_count},
    {"closed", meth_closed},
    {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"channel", global_channel},
    {NULL, NULL}
  };
  tsk_Sched *S = tsk_sched(L);
  luaL_newmetatable(L, TSK_CHANNEL_MT);
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, meth_tostring, 1);
  lua_setfield(L, -2, "__tostring");
  lua_newtable(L);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, meths, 1);  /* the metatable as upvalue: fast type checks */
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  tsk_setfuncs(L, S, funcs);
}
