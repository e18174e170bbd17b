/*
** xchannel.c: channels between OS threads, and the hub through which a
** scheduler is woken from other threads (the protocol is in xwait.h).
**
** An xchannel is a refcounted C object shared by every state and thread
** that holds it: a mutex, a FIFO of messages (copies made by copy.c) of
** at most `capacity` (0: a rendezvous, a sender waits until a receiver
** takes its message), and FIFOs of waiting senders and receivers, which
** may be tasklets of any scheduler or C threads. A waiting sender keeps
** its message in its waiter. Messages of one sender arrive in order.
*/
#include <stdlib.h>
#include <string.h>

#include "xwait.h"
#include "tasksock.h"

#define HUB_KEY   "tasksock.xhub"
#define CACHE_KEY "tasksock.xcache"

struct tsk_XChannel {
  uv_mutex_t mu;
  int refs;                   /* atomic */
  size_t capacity;
  tsk_Msg *head, *tail;       /* buffered messages */
  size_t count;
  int closed;
  tsk_XList senders, receivers;
};

struct tsk_Hub {
  uv_async_t async;
  uv_mutex_t mu;
  tsk_XWaiter *pending, *ptail;   /* completed waits to deliver (mu) */
  int closed;                     /* (mu) */
  /* owner thread only */
  tsk_Sched *S;
  tsk_XWaiter *active;            /* every live waiter of this scheduler */
  int nwait;                      /* of them, tasklets blocked: ref async */
  tsk_Msg *owned;                 /* freed if a decode raised */
};

/* --- waiter lists --------------------------------------------------- */

void tsk_xlist_push(tsk_XList *l, tsk_XWaiter *w) {
  w->next = NULL;
  w->prev = l->tail;
  if (l->tail) l->tail->next = w;
  else l->head = w;
  l->tail = w;
}

void tsk_xlist_remove(tsk_XList *l, tsk_XWaiter *w) {
  if (w->prev) w->prev->next = w->next;
  else l->head = w->next;
  if (w->next) w->next->prev = w->prev;
  else l->tail = w->prev;
  w->next = w->prev = NULL;
}

tsk_XWaiter *tsk_xlist_pop(tsk_XList *l) {
  tsk_XWaiter *w = l->head;
  if (w) tsk_xlist_remove(l, w);
  return w;
}

int tsk_condwait(uv_cond_t *c, uv_mutex_t *m, double timeout, uint64_t start) {
  uint64_t now, end;
  if (timeout < 0 || timeout >= 1e9) {
    uv_cond_wait(c, m);
    return 0;
  }
  end = start + (uint64_t)(timeout * 1e9);
  now = uv_hrtime();
  if (now >= end) return UV_ETIMEDOUT;
  return uv_cond_timedwait(c, m, end - now);
}

/* --- the hub -------------------------------------------------------- */

static char lateok;  /* t->wobj after a timed-out send that was taken */

int tsk_xwait_lateok(tsk_Tasklet *t) { return t->wobj == (void *)&lateok; }

static void active_remove(tsk_Hub *h, tsk_XWaiter *w) {
  if (w->aprev) w->aprev->anext = w->anext;
  else h->active = w->anext;
  if (w->anext) w->anext->aprev = w->aprev;
}

/* Free w, which is on no list but the active one (owner thread). */
static void xwait_drop(tsk_XWaiter *w) {
  tsk_Hub *h = w->hub;
  active_remove(h, w);
  w->ops->release(w);
  if (--h->nwait == 0) uv_unref((uv_handle_t *)&h->async);
  free(w);
}

tsk_XWaiter *tsk_xwait_new(tsk_Hub *h, tsk_Sched *S, const tsk_XWaitOps *ops,
                           void *obj) {
  tsk_XWaiter *w = (tsk_XWaiter *)calloc(1, sizeof *w);
  if (w == NULL) return NULL;
  w->ops = ops;
  w->hub = h;
  w->t = tsk_self(S);
  w->obj = obj;
  w->state = TSK_XWAITING;
  w->anext = h->active;
  if (h->active) h->active->aprev = w;
  h->active = w;
  if (h->nwait++ == 0) uv_ref((uv_handle_t *)&h->async);
  return w;
}

void tsk_xwait_free(tsk_XWaiter *w) { xwait_drop(w); }

void tsk_xwait_complete(tsk_XWaiter *w) {
  tsk_Hub *h = w->hub;
  if (w->cond != NULL) {
    uv_cond_signal(w->cond);
    return;
  }
  uv_mutex_lock(&h->mu);
  if (!h->closed) {
    int wake = h->pending == NULL;
    w->pnext = NULL;
    if (h->ptail) h->ptail->pnext = w;
    else h->pending = w;
    h->ptail = w;
    if (wake) uv_async_send(&h->async);
  }
  uv_mutex_unlock(&h->mu);
}

/* wcancel of a tasklet blocked on a cross-thread wait. */
static void xwait_cancel(tsk_Tasklet *t) {
  tsk_XWaiter *w = (tsk_XWaiter *)t->wobj;
  int r = w->ops->detach(w);
  t->wobj = r == 2 ? (void *)&lateok : NULL;
  if (r == 0) xwait_drop(w);  /* no other thread can reach it */
  else w->abandoned = 1;      /* it is on the pending list: the hub drops it */
}

int tsk_xwait_block(lua_State *L, tsk_XWaiter *w, double timeout, int won,
                    lua_KContext ctx, lua_KFunction k) {
  tsk_Tasklet *t = w->t;
  t->won = won;
  t->wobj = w;
  t->wcancel = xwait_cancel;
  return tsk_wait(L, t, timeout, ctx, k);
}

static int deliver_p(lua_State *L) {
  tsk_XWaiter *w = (tsk_XWaiter *)lua_touserdata(L, 1);
  int n, result = TSK_WOK;
  lua_pop(L, 1);
  n = w->ops->deliver(L, w, &result);
  lua_pushinteger(L, result);
  return n + 1;
}

static void hub_deliver(tsk_Hub *h, tsk_XWaiter *w) {
  tsk_Sched *S = h->S;
  if (!w->abandoned && !S->closing) {
    lua_State *L = S->L;
    int top = lua_gettop(L), n, result;
    lua_checkstack(L, 4);
    lua_pushcfunction(L, deliver_p);
    lua_pushlightuserdata(L, w);
    if (lua_pcall(L, 1, LUA_MULTRET, 0) == LUA_OK) {
      result = (int)lua_tointeger(L, -1);
      lua_pop(L, 1);
    }
    else
      result = TSK_WXERROR;  /* its message is the value */
    n = lua_gettop(L) - top;
    w->t->wcancel = NULL;  /* done: nothing to undo */
    tsk_wake(w->t, result, L, n);
    lua_settop(L, top);
  }
  xwait_drop(w);
}

static void hub_cb(uv_async_t *a) {
  tsk_Hub *h = (tsk_Hub *)a->data;
  tsk_XWaiter *w, *next;
  uv_mutex_lock(&h->mu);
  w = h->pending;
  h->pending = h->ptail = NULL;
  uv_mutex_unlock(&h->mu);
  for (; w != NULL; w = next) {  /* the whole list: sends coalesce */
    next = w->pnext;
    hub_deliver(h, w);
  }
}

void tsk_hub_own(tsk_Hub *h, tsk_Msg *m) {
  tsk_msg_free(h->owned);
  h->owned = m;
}

void tsk_hub_unown(tsk_Hub *h) {
  tsk_msg_free(h->owned);
  h->owned = NULL;
}

static void hub_free_cb(uv_handle_t *a) {
  tsk_Hub *h = (tsk_Hub *)a->data;
  uv_mutex_destroy(&h->mu);
  free(h);
}

/* The state closes: no thread may reach the hub once every waiter is
** detached from its object; then the async handle is closed. */
static int hub_gc(lua_State *L) {
  tsk_Hub **box = (tsk_Hub **)lua_touserdata(L, 1), *h = *box;
  tsk_XWaiter *w;
  if (h == NULL) return 0;
  *box = NULL;
  uv_mutex_lock(&h->mu);
  h->closed = 1;
  h->pending = h->ptail = NULL;
  uv_mutex_unlock(&h->mu);
  while ((w = h->active) != NULL) {
    if (!w->abandoned) w->ops->detach(w);
    xwait_drop(w);
  }
  tsk_hub_unown(h);
  uv_close((uv_handle_t *)&h->async, hub_free_cb);
  return 0;
}

tsk_Hub *tsk_hub(lua_State *L) {
  tsk_Hub *h;
  lua_getfield(L, LUA_REGISTRYINDEX, HUB_KEY);
  h = lua_touserdata(L, -1) ? *(tsk_Hub **)lua_touserdata(L, -1) : NULL;
  lua_pop(L, 1);
  if (h == NULL) luaL_error(L, "tasksock is not open in this state");
  return h;
}

static tsk_Hub *hub_new(lua_State *L, tsk_Sched *S) {
  tsk_Hub **box = (tsk_Hub **)lua_newuserdatauv(L, sizeof *box, 0);
  tsk_Hub *h;
  *box = NULL;
  h = (tsk_Hub *)calloc(1, sizeof *h);
  if (h == NULL || uv_mutex_init(&h->mu) != 0) {
    free(h);
    luaL_error(L, "not enough memory");
  }
  if (uv_async_init(S->loop, &h->async, hub_cb) != 0) {
    uv_mutex_destroy(&h->mu);
    free(h);
    luaL_error(L, "cannot create the hub's async handle");
  }
  h->async.data = h;
  h->S = S;
  uv_unref((uv_handle_t *)&h->async);  /* refd only while someone waits */
  *box = h;
  lua_newtable(L);
  lua_pushcfunction(L, hub_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, HUB_KEY);
  return h;
}

/* --- the channel object --------------------------------------------- */

tsk_XChannel *tsk_xchannel_new(size_t capacity) {
  tsk_XChannel *x = (tsk_XChannel *)calloc(1, sizeof *x);
  if (x == NULL) return NULL;
  if (uv_mutex_init(&x->mu) != 0) {
    free(x);
    return NULL;
  }
  x->refs = 1;
  x->capacity = capacity;
  return x;
}

void tsk_xchannel_ref(tsk_XChannel *x) {
  __atomic_add_fetch(&x->refs, 1, __ATOMIC_RELAXED);
}

void tsk_xchannel_unref(tsk_XChannel *x) {
  tsk_Msg *m, *next;
  if (x == NULL || __atomic_sub_fetch(&x->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
  for (m = x->head; m != NULL; m = next) {  /* no waiter can be left: */
    next = m->next;                          /* each holds a reference */
    tsk_msg_free(m);
  }
  uv_mutex_destroy(&x->mu);
  free(x);
}

static void enqueue(tsk_XChannel *x, tsk_Msg *m) {
  m->next = NULL;
  if (x->tail) x->tail->next = m;
  else x->head = m;
  x->tail = m;
  x->count++;
}

static tsk_Msg *dequeue(tsk_XChannel *x) {
  tsk_Msg *m = x->head;
  x->head = m->next;
  if (x->head == NULL) x->tail = NULL;
  x->count--;
  m->next = NULL;
  return m;
}

/* A message handed to a receiver that gave up goes back first in line. */
static void requeue(tsk_XChannel *x, tsk_Msg *m) {
  tsk_XWaiter *r = tsk_xlist_pop(&x->receivers);
  if (r != NULL) {
    r->msg = m;
    r->state = TSK_XDONE;
    tsk_xwait_complete(r);
    return;
  }
  m->next = x->head;
  x->head = m;
  if (x->tail == NULL) x->tail = m;
  x->count++;
}

/* Offer m (the mutex held): 0 if taken or buffered, 1 if the sender must
** wait, UV_EPIPE if closed. */
static int trysend(tsk_XChannel *x, tsk_Msg *m) {
  tsk_XWaiter *r;
  if (x->closed) return UV_EPIPE;
  if ((r = tsk_xlist_pop(&x->receivers)) != NULL) {
    r->msg = m;
    r->state = TSK_XDONE;
    tsk_xwait_complete(r);
    return 0;
  }
  if (x->count < x->capacity) {
    enqueue(x, m);
    return 0;
  }
  return 1;
}

/* Take a message (the mutex held): it, or NULL with *err UV_EPIPE when
** closed and empty, 1 when the receiver must wait. */
static tsk_Msg *tryrecv(tsk_XChannel *x, int *err) {
  tsk_XWaiter *s;
  tsk_Msg *m;
  if (x->count > 0) {
    m = dequeue(x);
    if ((s = tsk_xlist_pop(&x->senders)) != NULL) {  /* its offer fills the slot */
      enqueue(x, s->msg);
      s->msg = NULL;
      s->state = TSK_XDONE;
      tsk_xwait_complete(s);
    }
    return m;
  }
  if ((s = tsk_xlist_pop(&x->senders)) != NULL) {  /* a rendezvous */
    m = s->msg;
    s->msg = NULL;
    s->state = TSK_XDONE;
    tsk_xwait_complete(s);
    return m;
  }
  *err = x->closed ? UV_EPIPE : 1;
  return NULL;
}

int tsk_xchannel_close(tsk_XChannel *x) {
  tsk_XWaiter *w;
  uv_mutex_lock(&x->mu);
  x->closed = 1;
  while ((w = tsk_xlist_pop(&x->senders)) != NULL) {
    w->state = TSK_XCLOSED;
    tsk_xwait_complete(w);
  }
  while ((w = tsk_xlist_pop(&x->receivers)) != NULL) {
    w->state = TSK_XCLOSED;
    tsk_xwait_complete(w);
  }
  uv_mutex_unlock(&x->mu);
  return 0;
}

/* --- waiting from C threads ----------------------------------------- */

void tsk_xclass_new(lua_State *L, const char *name, lua_CFunction tostring,
                    lua_CFunction gc, const luaL_Reg *meths, tsk_Sched *S, tsk_Hub *h) {
  luaL_newmetatable(L, name);
  lua_pushcfunction(L, tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  lua_newtable(L);
  for (; meths->name != NULL; meths++) {
    lua_pushlightuserdata(L, S);
    lua_pushlightuserdata(L, h);
    lua_pushcclosure(L, meths->func, 2);
    lua_setfield(L, -2, meths->name);
  }
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

int tsk_xchannel_sendmsg(tsk_XChannel *x, tsk_Msg *m, double timeout) {
  uint64_t start = uv_hrtime();
  tsk_XWaiter w;
  uv_cond_t c;
  int r;
  uv_mutex_lock(&x->mu);
  r = trysend(x, m);
  if (r != 1 || timeout == 0) {
    uv_mutex_unlock(&x->mu);
    if (r != 0) tsk_msg_free(m);
    return r == 1 ? UV_ETIMEDOUT : r;
  }
  if (uv_cond_init(&c) != 0) {
    uv_mutex_unlock(&x->mu);
    tsk_msg_free(m);
    return UV_ENOMEM;
  }
  memset(&w, 0, sizeof w);
  w.cond = &c;
  w.obj = x;
  w.msg = m;
  w.state = TSK_XWAITING;
  tsk_xlist_push(&x->senders, &w);
  while (w.state == TSK_XWAITING)
    if (tsk_condwait(&c, &x->mu, timeout, start) == UV_ETIMEDOUT &&
        w.state == TSK_XWAITING) {
      tsk_xlist_remove(&x->senders, &w);
      break;
    }
  uv_mutex_unlock(&x->mu);
  uv_cond_destroy(&c);
  tsk_msg_free(w.msg);  /* NULL when it was taken */
  return w.state == TSK_XDONE ? 0 : w.state == TSK_XCLOSED ? UV_EPIPE : UV_ETIMEDOUT;
}

int tsk_xchannel_recvmsg(tsk_XChannel *x, tsk_Msg **out, double timeout) {
  uint64_t start = uv_hrtime();
  tsk_XWaiter w;
  uv_cond_t c;
  int err = 0;
  uv_mutex_lock(&x->mu);
  *out = tryrecv(x, &err);
  if (*out != NULL || err != 1 || timeout == 0) {
    uv_mutex_unlock(&x->mu);
    return *out != NULL ? 0 : err == 1 ? UV_ETIMEDOUT : err;
  }
  if (uv_cond_init(&c) != 0) {
    uv_mutex_unlock(&x->mu);
    return UV_ENOMEM;
  }
  memset(&w, 0, sizeof w);
  w.cond = &c;
  w.obj = x;
  w.state = TSK_XWAITING;
  tsk_xlist_push(&x->receivers, &w);
  while (w.state == TSK_XWAITING)
    if (tsk_condwait(&c, &x->mu, timeout, start) == UV_ETIMEDOUT &&
        w.state == TSK_XWAITING) {
      tsk_xlist_remove(&x->receivers, &w);
      break;
    }
  uv_mutex_unlock(&x->mu);
  uv_cond_destroy(&c);
  *out = w.msg;
  return w.state == TSK_XDONE ? 0 : w.state == TSK_XCLOSED ? UV_EPIPE : UV_ETIMEDOUT;
}

size_t tsk_xchannel_count(tsk_XChannel *x) {
  size_t n;
  uv_mutex_lock(&x->mu);
  n = x->count;
  uv_mutex_unlock(&x->mu);
  return n;
}

/* --- waiting from tasklets ------------------------------------------ */

static void x_release(tsk_XWaiter *w) {
  tsk_msg_free(w->msg);
  w->msg = NULL;
  tsk_xchannel_unref((tsk_XChannel *)w->obj);
}

static int send_deliver(lua_State *L, tsk_XWaiter *w, int *result) {
  (void)L;
  *result = w->state == TSK_XDONE ? TSK_WOK : TSK_WCLOSED;
  return 0;
}

static int send_detach(tsk_XWaiter *w) {
  tsk_XChannel *x = (tsk_XChannel *)w->obj;
  int r;
  uv_mutex_lock(&x->mu);
  if (w->state == TSK_XWAITING) {
    tsk_xlist_remove(&x->senders, w);
    r = 0;
  }
  else
    r = w->state == TSK_XDONE ? 2 : 1;
  uv_mutex_unlock(&x->mu);
  return r;
}

static int recv_deliver(lua_State *L, tsk_XWaiter *w, int *result) {
  if (w->state != TSK_XDONE) {
    *result = TSK_WCLOSED;
    return 0;
  }
  return tsk_copy_decode(L, w->msg);
}

static int recv_detach(tsk_XWaiter *w) {
  tsk_XChannel *x = (tsk_XChannel *)w->obj;
  int r = 1;
  uv_mutex_lock(&x->mu);
  if (w->state == TSK_XWAITING) {
    tsk_xlist_remove(&x->receivers, w);
    r = 0;
  }
  else if (w->msg != NULL) {  /* it was given a message: give it back */
    requeue(x, w->msg);
    w->msg = NULL;
  }
  uv_mutex_unlock(&x->mu);
  return r;
}

static const tsk_XWaitOps send_ops = {send_deliver, send_detach, x_release};
static const tsk_XWaitOps recv_ops = {recv_deliver, recv_detach, x_release};

/* --- Lua ------------------------------------------------------------ */

#define upS(L)   ((tsk_Sched *)lua_touserdata((L), lua_upvalueindex(1)))
#define upHub(L) ((tsk_Hub *)lua_touserdata((L), lua_upvalueindex(2)))

tsk_XChannel *tsk_xchannel_test(lua_State *L, int idx) {
  tsk_XChannel **box = (tsk_XChannel **)luaL_testudata(L, idx, TSK_XCHANNEL_MT);
  return box ? *box : NULL;
}

static tsk_XChannel *checkx(lua_State *L, int arg) {
  tsk_XChannel **box = (tsk_XChannel **)luaL_checkudata(L, arg, TSK_XCHANNEL_MT);
  /* its finalizer ran (it was reached again from another finalizer) */
  if (*box == NULL) luaL_argerror(L, arg, "xchannel already finalized");
  return *box;
}

void tsk_xchannel_push(lua_State *L, tsk_XChannel *x) {
  tsk_XChannel **box;
  luaL_checkstack(L, 4, "pushing an xchannel");
  if (luaL_getmetatable(L, TSK_XCHANNEL_MT) != LUA_TTABLE) {
    lua_pop(L, 1);  /* a state that never loaded tasksock: load it */
    luaL_requiref(L, "tasksock.core", luaopen_tasksock_core, 0);
    lua_pop(L, 1);
  }
  else
    lua_pop(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, CACHE_KEY);
  lua_pushlightuserdata(L, x);
  if (lua_rawget(L, -2) == LUA_TUSERDATA) {  /* the same userdata again */
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  box = (tsk_XChannel **)lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, TSK_XCHANNEL_MT);
  tsk_xchannel_ref(x);
  *box = x;
  lua_pushlightuserdata(L, x);
  lua_pushvalue(L, -2);
  lua_rawset(L, -4);  /* cache[x] = ud */
  lua_remove(L, -2);
}

static int x_gc(lua_State *L) {
  tsk_XChannel **box = (tsk_XChannel **)luaL_testudata(L, 1, TSK_XCHANNEL_MT);
  if (box == NULL || *box == NULL) return 0;  /* something else; or again */
  /* A finalizer called by hand leaves the userdata alive in the cache: drop
     it there, or the next xchannel allocated at the same address gets it */
  if (lua_getfield(L, LUA_REGISTRYINDEX, CACHE_KEY) == LUA_TTABLE &&
      lua_rawgetp(L, -1, *box) == LUA_TUSERDATA && lua_rawequal(L, -1, 1)) {
    lua_pushnil(L);
    lua_rawsetp(L, -3, *box);
  }
  tsk_xchannel_unref(*box);
  *box = NULL;
  return 0;
}

/* Can L block now? As tsk_checkblock, without raising. */
int tsk_xcanblock(lua_State *L, tsk_Sched *S) {
  if (S->current != NULL) return !S->current->kill && L == S->pcoro;
  return L == S->pcoro || !S->inloop;
}

static int waitfail(lua_State *L, tsk_Tasklet *t) {
  switch (t->wresult) {
    case TSK_WCLOSED: return tsk_fail(L, "closed");
    case TSK_WXERROR: return lua_error(L);
    default: return tsk_fail(L, "timeout");
  }
}

static int sendk(lua_State *L, int status, lua_KContext ctx) {
  tsk_Tasklet *t = tsk_self(upS(L));
  (void)status; (void)ctx;
  if (t->wresult == TSK_WOK || (t->wresult == TSK_WTIMEOUT && tsk_xwait_lateok(t))) {
    lua_pushboolean(L, 1);
    return 1;
  }
  return waitfail(L, t);
}

/* x:send(v[, timeout]): true | nil, "closed" | nil, "timeout" */
static int meth_send(lua_State *L) {
  tsk_XChannel *x = checkx(L, 1);
  double timeout = tsk_opttimeout(L, 3);
  tsk_Sched *S = upS(L);
  tsk_XWaiter *w;
  tsk_Msg *m;
  int r;
  luaL_checkany(L, 2);
  m = tsk_copy_encode(L, 2, 1, 0, "value");  /* errors before any effect */
  lua_settop(L, 1);
  uv_mutex_lock(&x->mu);
  r = trysend(x, m);
  if (r == 1 && timeout != 0 && tsk_xcanblock(L, S)) {
    w = tsk_xwait_new(upHub(L), S, &send_ops, x);
    if (w != NULL) {
      tsk_xchannel_ref(x);
      w->msg = m;
      tsk_xlist_push(&x->senders, w);
      uv_mutex_unlock(&x->mu);
      return tsk_xwait_block(L, w, timeout, TSK_ON_CHANNEL, 0, sendk);
    }
    r = UV_ENOMEM;
  }
  uv_mutex_unlock(&x->mu);
  if (r == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  tsk_msg_free(m);
  if (r == UV_EPIPE) return tsk_fail(L, "closed");
  if (r == UV_ENOMEM) return luaL_error(L, "not enough memory");
  if (timeout == 0) return tsk_fail(L, "timeout");
  tsk_checkblock(L, S);  /* raises why it cannot block */
  return luaL_error(L, "cannot block here");
}

static int receivek(lua_State *L, int status, lua_KContext ctx) {
  tsk_Tasklet *t = tsk_self(upS(L));
  (void)status; (void)ctx;
  if (t->wresult == TSK_WOK) return 1;  /* the value, delivered on top */
  return waitfail(L, t);
}

/* x:receive([timeout]): v | nil, "closed" | nil, "timeout" */
static int meth_receive(lua_State *L) {
  tsk_XChannel *x = checkx(L, 1);
  double timeout = tsk_opttimeout(L, 2);
  tsk_Sched *S = upS(L);
  tsk_Hub *h = upHub(L);
  tsk_XWaiter *w;
  tsk_Msg *m;
  int err = 0;
  lua_settop(L, 1);
  uv_mutex_lock(&x->mu);
  m = tryrecv(x, &err);
  if (m == NULL && err == 1 && timeout != 0 && tsk_xcanblock(L, S)) {
    w = tsk_xwait_new(h, S, &recv_ops, x);
    if (w != NULL) {
      tsk_xchannel_ref(x);
      tsk_xlist_push(&x->receivers, w);
      uv_mutex_unlock(&x->mu);
      return tsk_xwait_block(L, w, timeout, TSK_ON_CHANNEL, 0, receivek);
    }
    err = UV_ENOMEM;
  }
  uv_mutex_unlock(&x->mu);
  if (m != NULL) {
    tsk_hub_own(h, m);  /* freed even if decoding raises */
    tsk_copy_decode(L, m);
    tsk_hub_unown(h);
    return 1;
  }
  if (err == UV_EPIPE) return tsk_fail(L, "closed");
  if (err == UV_ENOMEM) return luaL_error(L, "not enough memory");
  if (timeout == 0) return tsk_fail(L, "timeout");
  tsk_checkblock(L, S);
  return luaL_error(L, "cannot block here");
}

/* x:close(): wakes every waiter, on every thread, with nil, "closed";
** buffered messages can still be received. */
static int meth_close(lua_State *L) {
  tsk_XChannel **box = (tsk_XChannel **)luaL_checkudata(L, 1, TSK_XCHANNEL_MT);
  if (*box != NULL) tsk_xchannel_close(*box);  /* a finalized one: nothing to do */
  lua_pushboolean(L, 1);
  return 1;
}

static int meth_count(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)tsk_xchannel_count(checkx(L, 1)));
  return 1;
}

static int meth_closed(lua_State *L) {
  tsk_XChannel *x = checkx(L, 1);
  int c;
  uv_mutex_lock(&x->mu);
  c = x->closed;
  uv_mutex_unlock(&x->mu);
  lua_pushboolean(L, c);
  return 1;
}

static int meth_capacity(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)checkx(L, 1)->capacity);
  return 1;
}

static int meth_tostring(lua_State *L) {
  tsk_XChannel **box = (tsk_XChannel **)luaL_checkudata(L, 1, TSK_XCHANNEL_MT);
  tsk_XChannel *x = *box;
  size_t n;
  int c;
  if (x == NULL) {
    lua_pushfstring(L, "xchannel (finalized): %p", (void *)box);
    return 1;
  }
  uv_mutex_lock(&x->mu);
  n = x->count;
  c = x->closed;
  uv_mutex_unlock(&x->mu);
  lua_pushfstring(L, "xchannel (%I/%I%s): %p", (LUAI_UACINT)n,
                  (LUAI_UACINT)x->capacity, c ? ", closed" : "", (void *)x);
  return 1;
}

/* ts.xchannel([capacity]) */
static int global_xchannel(lua_State *L) {
  lua_Integer cap = luaL_optinteger(L, 1, 0);
  tsk_XChannel *x;
  luaL_argcheck(L, cap >= 0, 1, "capacity must not be negative");
  x = tsk_xchannel_new((size_t)cap);
  if (x == NULL) return luaL_error(L, "not enough memory");
  tsk_xchannel_push(L, x);  /* should it raise, x's memory is lost */
  tsk_xchannel_unref(x);
  return 1;
}

/* ts._xencode(...): the message for the values, as a string; and
** ts._xdecode(s): its values. For tests and fuzzing of the copier. */
static int global_xencode(lua_State *L) {
  tsk_Msg *m = tsk_copy_encode(L, 1, lua_gettop(L), 0, "value");
  lua_pushlstring(L, (const char *)m->data, m->len);  /* no xchannel in it */
  tsk_msg_free(m);
  return 1;
}

static int global_xdecode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_settop(L, 1);
  return tsk_copy_decodebuf(L, (const unsigned char *)s, len, NULL, 0);
}

void tsk_xchannel_open(lua_State *L) {
  static const luaL_Reg meths[] = {
    {"send", meth_send},
    {"receive", meth_receive},
    {"close", meth_close},
    {"count", meth_count},
    {"closed", meth_closed},
    {"capacity", meth_capacity},
    {NULL, NULL}
  };
  tsk_Sched *S = tsk_sched(L);
  tsk_Hub *h = hub_new(L, S);
  lua_newtable(L);  /* the cache: one userdata per xchannel per state */
  lua_newtable(L);
  lua_pushliteral(L, "v");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, CACHE_KEY);
  tsk_xclass_new(L, TSK_XCHANNEL_MT, meth_tostring, x_gc, meths, S, h);
  lua_pushcfunction(L, global_xchannel);
  lua_setfield(L, -2, "xchannel");
  lua_pushcfunction(L, global_xencode);
  lua_setfield(L, -2, "_xencode");
  lua_pushcfunction(L, global_xdecode);
  lua_setfield(L, -2, "_xdecode");
}
