/*
** sched.c: the scheduler. The one place that resumes tasklets: a run
** queue drained from libuv's idle and check phases, a timer heap behind a
** single uv_timer_t, the wait/wake protocol of core.h, and the coroutine
** library's resume/wrap that let scheduler yields pass through a user's
** own coroutines.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "poller.h"

/* The value a scheduler yield carries through a coroutine nested in a
** tasklet (coresume passes it on) and out of a tasklet whose coroutine
** Lua code holds; only its address matters. A tasklet's own coroutine
** yields nothing: only resume() sees that yield. */
static char sentinel;  /* never written */
#define SENTINEL ((void *)&sentinel)

/* Waits longer than this are waits forever (and cannot overflow). */
#define FOREVER 1e9

static void idle_cb(uv_idle_t *h);

double tsk_now(void) { return (double)uv_hrtime() * 1e-9; }

/* --- timer heap ----------------------------------------------------- */

/* The heap holds each deadline beside its tasklet: sifting reads no
** tasklet record (and the record has no room for it). */
static void heap_set(tsk_Sched *S, int i, tsk_Timer e) {
  S->heap[i] = e;
  e.t->heapidx = i;
}

static void heap_up(tsk_Sched *S, int i) {
  tsk_Timer e = S->heap[i];
  while (i > 0) {
    int p = (i - 1) / 2;
    if (S->heap[p].deadline <= e.deadline) break;
    heap_set(S, i, S->heap[p]);
    i = p;
  }
  heap_set(S, i, e);
}

static void heap_down(tsk_Sched *S, int i) {
  tsk_Timer e = S->heap[i];
  for (;;) {
    int c = 2 * i + 1;
    if (c >= S->nheap) break;
    if (c + 1 < S->nheap && S->heap[c + 1].deadline < S->heap[c].deadline) c++;
    if (e.deadline <= S->heap[c].deadline) break;
    heap_set(S, i, S->heap[c]);
    i = c;
  }
  heap_set(S, i, e);
}

static void timer_cb(uv_timer_t *h);

/* Arm the uv timer for the earliest deadline, if it is not already. */
static void timer_arm(tsk_Sched *S) {
  uint64_t d, now, ms;
  if (S->nheap == 0) {
    if (S->armed) uv_timer_stop(&S->timer);
    S->armed = 0;
    return;
  }
  d = S->heap[0].deadline;
  if (S->armed == d) return;
  uv_update_time(S->loop);
  now = uv_hrtime();
  ms = d > now ? (d - now + 999999) / 1000000 : 0;
  uv_timer_start(&S->timer, timer_cb, ms, 0);
  S->armed = d;
}

static int heap_add(tsk_Sched *S, tsk_Tasklet *t, uint64_t deadline) {
  tsk_Timer e;
  if (S->nheap == S->heapcap) {
    int cap = S->heapcap ? 2 * S->heapcap : 64;
    tsk_Timer *h = realloc(S->heap, (size_t)cap * sizeof *h);
    if (h == NULL) return 0;
    S->heap = h;
    S->heapcap = cap;
  }
  e.deadline = deadline;
  e.t = t;
  heap_set(S, S->nheap++, e);
  heap_up(S, S->nheap - 1);
  if (t->heapidx == 0) timer_arm(S);
  return 1;
}

static void heap_remove(tsk_Sched *S, tsk_Tasklet *t) {
  int i = t->heapidx;
  if (i < 0) return;
  t->heapidx = -1;
  S->nheap--;
  if (i < S->nheap) {
    heap_set(S, i, S->heap[S->nheap]);
    heap_up(S, i);
    heap_down(S, S->heap[i].t->heapidx);
  }
  if (S->nheap == 0) timer_arm(S);  /* nothing left to wait for */
}

/* Undo every link of t's wait: queue, timer and the primitive's own. */
static void cancelwait(tsk_Tasklet *t) {
  void (*cancel)(tsk_Tasklet *) = t->wcancel;
  tsk_queue_remove(t);
  heap_remove(t->S, t);
  t->wcancel = NULL;
  if (cancel) cancel(t);
}

static void timer_cb(uv_timer_t *h) {
  tsk_Sched *S = (tsk_Sched *)h->data;
  uint64_t now = uv_hrtime();
  S->armed = 0;
  while (S->nheap > 0 && S->heap[0].deadline <= now) {
    tsk_Tasklet *t = S->heap[0].t;
    cancelwait(t);
    tsk_wake(t, TSK_WTIMEOUT, NULL, 0);
  }
  timer_arm(S);
}

/* --- run queue and resuming ----------------------------------------- */

static void ready(tsk_Sched *S, tsk_Tasklet *t) {
  t->status = TSK_READY;
  if (!S->idling && !S->closing) {  /* the loop must not block in poll */
    uv_idle_start(&S->idle, idle_cb);
    S->idling = 1;
  }
  tsk_queue_push(&S->runq, t);
}

void tsk_ready(tsk_Tasklet *t) { ready(t->S, t); }

void tsk_wake(tsk_Tasklet *t, int result, lua_State *from, int n) {
  tsk_Sched *S = t->S;
  if (t->status != TSK_BLOCKED || S->closing) {
    if (n > 0) lua_pop(from, n);
    return;
  }
  tsk_queue_remove(t);
  heap_remove(S, t);
  t->wcancel = NULL;
  t->wresult = result;
  t->won = TSK_ON_NOTHING;
  if (n > 0) {
    if (from != t->L) {  /* else the waker pushed them there itself */
      lua_checkstack(t->L, n);
      lua_xmove(from, t->L, n);
    }
    t->nargs += n;
  }
  if (t->ismain) {
    t->status = TSK_READY;
    uv_stop(S->loop);  /* let tsk_drive return */
  }
  else
    ready(S, t);
}

void tsk_queue_wakeall(tsk_Queue *q, int result) {
  tsk_Tasklet *t;
  while ((t = q->head) != NULL) {
    t->wcancel = NULL;  /* the owner is going away: nothing to undo */
    tsk_wake(t, result, NULL, 0);
    if (q->head == t) tsk_queue_remove(t);  /* was not blocked: unlink anyway */
  }
}

#define DRAIN_BUDGET 1024
#define DRAIN_SLICE 10000000u  /* ns */

/* Resume t with its pending values; settle what it did. from is the
** thread resuming it (NULL for the loop), for Lua's C-call count. */
static void resume(tsk_Sched *S, tsk_Tasklet *t, lua_State *from) {
  lua_State *co = t->L;
  int nres, st, nargs = t->nargs;
  t->nargs = 0;
  t->started = 1;
  t->status = TSK_RUNNING;
  S->current = t;
  S->pcoro = co;
  S->switches++;
  S->budget--;
  st = lua_resume(co, from, nargs, &nres);
  S->current = NULL;
  S->pcoro = NULL;
  if (st == LUA_YIELD) {
    if (nres > 0) lua_pop(co, nres);
    if (t->status == TSK_RUNNING) tsk_ready(t);  /* a plain coroutine.yield */
  }
  else
    tsk_tasklet_finish(S, t, st == LUA_OK, st == LUA_OK ? nres : 1);
  if ((S->budget & 15) == 0 && uv_hrtime() - S->slice >= DRAIN_SLICE)
    S->budget = 0;  /* long turns: let the loop poll (see drain) */
}

/* Resume ready tasklets, those made ready meanwhile included, up to a
** budget per turn of the loop: switching tasklets costs no system call,
** while polling for I/O between every two would; the budget keeps I/O
** and timers from starving. It is a count of turns, and a time: tasklets
** that work long between their yields (1,024 turns of a millisecond
** would keep the loop away for a second) end it after DRAIN_SLICE,
** checked every 16 turns. */
static void drain(tsk_Sched *S) {
  if (S->runq.head != NULL) {
    S->budget = DRAIN_BUDGET;
    S->slice = uv_hrtime();
    while (S->budget > 0 && S->runq.head != NULL && !S->closing && !S->stopping)
      resume(S, tsk_queue_pop(&S->runq), NULL);
  }
  if (S->runq.head == NULL && S->idling) {
    uv_idle_stop(&S->idle);
    S->idling = 0;
  }
}

/*
** A handoff: t (resumed by drain, in its own coroutine L) has begun a
** wait that another tasklet may end (a channel, a join); instead of
** yielding to drain, which would resume the next ready tasklet, it
** resumes that one itself, and so on, in the run queue's order and within
** drain's budget. When t's own turn comes (it was woken meanwhile) it goes
** on in place: its yield and resume are spared, which halves the switches
** of two tasklets talking over channels. The others run one level deep:
** their waits yield, back to here. (A wait on I/O gains nothing: only the
** loop can end it.) Returns 1 when t is to go on (popped, running), 0 when
** it must yield: still blocked, or ready behind others, or the loop must
** turn (budget spent, stop, close).
*/
static int handoff(lua_State *L, tsk_Sched *S, tsk_Tasklet *t) {
  int go = 0;
  S->handing = 1;
  while (S->budget > 0 && S->runq.head != NULL && !S->closing && !S->stopping) {
    tsk_Tasklet *n = tsk_queue_pop(&S->runq);
    if (n == t) {  /* its turn: a switch back to it, as drain's would be */
      go = 1;
      S->budget--;
      S->switches++;
      break;
    }
    resume(S, n, L);
  }
  S->handing = 0;
  S->current = t;
  S->pcoro = L;
  return go;
}

/* Each turn's resumes; then the sockets they closed are freed (poller.h). */
static void turn(tsk_Sched *S) {
  drain(S);
  tsk_poller_reap(S);
}

static void idle_cb(uv_idle_t *h) { turn((tsk_Sched *)h->data); }
static void check_cb(uv_check_t *h) { turn((tsk_Sched *)h->data); }

/* --- waiting -------------------------------------------------------- */

/* Does a scheduler yield from L reach us (the scheduler or a coroutine
** resume of ours)? */
static int canyield(lua_State *L, tsk_Sched *S) {
  return L == S->pcoro && lua_isyieldable(L);
}

static int raisekill(lua_State *L, tsk_Tasklet *t) {
  t->kill = 0;
  t->killing = 1;
  tsk_tasklet_reason(L, t);
  return lua_error(L);
}

/* Every scheduler yield continues here: a kill raises, else the
** primitive's own continuation runs (a kill that came after the wait
** delivered its values waits for the next blocking call). */
static int waitk(lua_State *L, int status, lua_KContext ctx) {
  tsk_Tasklet *t = (tsk_Tasklet *)ctx;
  if (t->kill == TSK_KILL_NOW) return raisekill(L, t);
  return t->wk(L, status, t->wctx);
}

void tsk_checkblock(lua_State *L, tsk_Sched *S) {
  if (S->current != NULL) {
    if (S->current->kill) raisekill(L, S->current);
    if (!canyield(L, S))
      luaL_error(L, "attempt to block across a C-call boundary "
                    "(or a coroutine resumed without tasksock's coroutine.resume)");
  }
  else if (!canyield(L, S) && S->inloop)
    luaL_error(L, "attempt to block outside any tasklet while the loop runs");
}

void tsk_drive(lua_State *L, tsk_Sched *S, tsk_Tasklet *t) {
  while (t->status == TSK_BLOCKED) {
    int alive;
    S->inloop = 1;
    alive = uv_run(S->loop, UV_RUN_ONCE);
    S->inloop = 0;
    if (t->status == TSK_BLOCKED && !alive && S->runq.head == NULL) {
      cancelwait(t);
      t->status = TSK_RUNNING;
      luaL_error(L, "deadlock: the main chunk waits and no tasklet or event can wake it");
    }
  }
  t->status = TSK_RUNNING;
  if (t->nargs > 0) {
    lua_checkstack(L, t->nargs);
    lua_xmove(t->L, L, t->nargs);
    t->nargs = 0;
  }
}

int tsk_wait(lua_State *L, tsk_Tasklet *t, double timeout, lua_KContext ctx,
             lua_KFunction k) {
  tsk_Sched *S = t->S;
  int yield = canyield(L, S);
  if (t->kill || (!yield && (!t->ismain || S->inloop))) {
    cancelwait(t);
    tsk_checkblock(L, S);  /* raises */
  }
  t->wk = k;
  t->wctx = ctx;
  t->wL = L;
  t->wresult = TSK_WOK;
  t->wsince = (uint32_t)uv_now(S->loop);
  t->status = TSK_BLOCKED;
  if (timeout >= 0 && timeout < FOREVER) {
    if (!heap_add(S, t, uv_hrtime() + (uint64_t)(timeout * 1e9))) {
      cancelwait(t);
      t->status = TSK_RUNNING;
      luaL_error(L, "not enough memory");
    }
  }
  if (yield) {  /* a tasklet, or a coroutine we resume: yield */
    if ((t->won == TSK_ON_CHANNEL || t->won == TSK_ON_JOIN) &&
        S->runq.head != NULL && !S->handing && t == S->current && L == t->L &&
        !t->exposed && handoff(L, S, t)) {
      t->status = TSK_RUNNING;  /* woken, its values on top of L */
      t->nargs = 0;
      return waitk(L, LUA_YIELD, (lua_KContext)t);
    }
    if (L == t->L && !t->exposed)  /* only resume() sees it: no mark */
      return lua_yieldk(L, 0, (lua_KContext)t, waitk);
    lua_pushlightuserdata(L, SENTINEL);
    return lua_yieldk(L, 1, (lua_KContext)t, waitk);
  }
  tsk_drive(L, S, t);  /* the main chunk: run the loop meanwhile */
  return waitk(L, LUA_YIELD, (lua_KContext)t);
}

/* --- Lua functions -------------------------------------------------- */

double tsk_opttimeout(lua_State *L, int arg) {
  double t;
  if (lua_isnoneornil(L, arg)) return -1;
  t = luaL_checknumber(L, arg);
  if (t != t) luaL_argerror(L, arg, "timeout is NaN");
  return t < 0 ? -1 : t;
}

void *tsk_checkudata(lua_State *L, int arg, int up, const char *tname) {
  void *p = lua_touserdata(L, arg);
  if (p == NULL || !lua_getmetatable(L, arg) ||
      !lua_rawequal(L, -1, lua_upvalueindex(up)))
    luaL_typeerror(L, arg, tname);
  lua_pop(L, 1);
  return p;
}

int tsk_samevalue(lua_State *L, int a, int b) {
  lua_Number x, y;
  if (lua_rawequal(L, a, b)) return 1;
  if (lua_type(L, a) != LUA_TNUMBER || lua_type(L, b) != LUA_TNUMBER) return 0;
  x = lua_tonumber(L, a);
  y = lua_tonumber(L, b);
  return x != x && y != y;
}

int tsk_fail(lua_State *L, const char *msg) {
  luaL_pushfail(L);
  lua_pushstring(L, msg);
  return 2;
}

void tsk_setfuncs(lua_State *L, tsk_Sched *S, const luaL_Reg *l) {
  for (; l->name != NULL; l++) {
    lua_pushlightuserdata(L, S);
    lua_pushcclosure(L, l->func, 1);
    lua_setfield(L, -2, l->name);
  }
}

static int sleepk(lua_State *L, int status, lua_KContext ctx) {
  (void)L; (void)status; (void)ctx;
  return 0;
}

static int global_yield(lua_State *L) {
  tsk_Sched *S = tsk_upsched(L);
  tsk_Tasklet *t = S->current;
  if (t == NULL) {  /* the main chunk: let ready tasklets run once */
    if (!canyield(L, S) && S->inloop)
      return luaL_error(L, "attempt to yield outside any tasklet while the loop runs");
    if (!S->inloop) {
      S->inloop = 1;
      uv_run(S->loop, UV_RUN_NOWAIT);
      S->inloop = 0;
    }
    return 0;
  }
  tsk_checkblock(L, S);
  t->wk = sleepk;
  t->wctx = 0;
  t->won = TSK_ON_YIELD;
  tsk_ready(t);
  if (L == t->L && !t->exposed) return lua_yieldk(L, 0, (lua_KContext)t, waitk);
  lua_pushlightuserdata(L, SENTINEL);
  return lua_yieldk(L, 1, (lua_KContext)t, waitk);
}

static int global_sleep(lua_State *L) {
  tsk_Sched *S = tsk_upsched(L);
  double s = luaL_checknumber(L, 1);
  tsk_Tasklet *t;
  if (s != s) return luaL_argerror(L, 1, "NaN");
  if (s <= 0) return global_yield(L);
  t = tsk_self(S);
  t->won = TSK_ON_SLEEP;
  t->wobj = NULL;
  return tsk_wait(L, t, s, 0, sleepk);
}

static int global_now(lua_State *L) {
  lua_pushnumber(L, tsk_now());
  return 1;
}

/* Raise the deadlock report: which tasklets wait, on what. */
static int deadlock(lua_State *L, tsk_Sched *S) {
  static const char *const on[] = {
    "nothing", "sleep", "yield", "join", "channel", "socket", "dns", "thread",
    "work", "select", "other"
  };
  luaL_Buffer b;
  tsk_Tasklet *t;
  int n = 0, slot = 0;
  luaL_buffinit(L, &b);
  lua_pushfstring(L, "deadlock: %d tasklet(s) blocked and nothing can wake them:",
                  (int)S->ntasklets);
  luaL_addvalue(&b);
  while ((t = tsk_tasklet_next(L, S, &slot)) != NULL && n++ < 20) {
    lua_pushfstring(L, "\n  tasklet '%s' (%s, waiting on %s)", tsk_tasklet_name(L, t),
                    t->status == TSK_BLOCKED ? "blocked" : "ready", on[t->won]);
    luaL_addvalue(&b);
  }
  if (t != NULL) luaL_addstring(&b, "\n  ...");
  luaL_pushresult(&b);
  return lua_error(L);
}

static int global_run(lua_State *L) {
  tsk_Sched *S = tsk_upsched(L);
  if (S->current != NULL || S->inloop)
    return luaL_error(L, "tasksock.run called from inside a tasklet or the loop");
  S->stopping = 0;
  S->running = 1;
  while (S->ntasklets > 0 && !S->stopping) {
    int alive;
    S->inloop = 1;
    alive = uv_run(S->loop, UV_RUN_ONCE);
    S->inloop = 0;
    if (!alive && S->runq.head == NULL && S->ntasklets > 0 && !S->stopping) {
      S->running = 0;
      return deadlock(L, S);
    }
  }
  S->running = S->stopping = 0;
  return 0;
}

static int global_stop(lua_State *L) {
  tsk_Sched *S = tsk_upsched(L);
  if (S->running) {  /* only ts.run() stops; a blocked main chunk waits on */
    S->stopping = 1;
    uv_stop(S->loop);
  }
  return 0;
}

static int global_onerror(lua_State *L) {
  tsk_Sched *S = tsk_upsched(L);
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->errref);  /* the old one */
  luaL_unref(L, LUA_REGISTRYINDEX, S->errref);
  lua_pushvalue(L, 1);
  S->errref = lua_isnil(L, -1) ? (lua_pop(L, 1), LUA_NOREF)
                               : luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

/* --- the coroutine library's resume and wrap ------------------------ */

/*
** resume/wrap as in Lua, except that a scheduler yield from inside the
** coroutine is passed on: up to the scheduler when we run in a tasklet
** (or in a coroutine we resumed), or by driving the loop in the main
** chunk, and the coroutine is resumed with what the wait delivered.
** ctx: 1 for wrap (the coroutine is upvalue 2), 0 for resume (arg 1).
*/
static lua_State *coarg(lua_State *L, int wrap) {
  return wrap ? lua_tothread(L, lua_upvalueindex(2)) : lua_tothread(L, 1);
}

static int coresume(lua_State *L, lua_State *co, int narg, int wrap);

/* Is the error on top of L the kill of t (running) unwinding? A kill that
** a pcall caught is over: an error later raised in a coroutine of t is
** an ordinary one, for resume or wrap to report. */
static int iskill(lua_State *L, tsk_Tasklet *t) {
  int is;
  if (t == NULL || !t->killing) return 0;
  luaL_checkstack(L, 2, NULL);
  tsk_tasklet_reason(L, t);
  is = tsk_samevalue(L, -1, -2);
  lua_pop(L, 1);
  return is;
}

static int coresumek(lua_State *L, int status, lua_KContext ctx) {
  int wrap = (int)ctx;
  lua_State *co = coarg(L, wrap);
  int narg = lua_gettop(L) - (wrap ? 0 : 1);
  (void)status;
  if (!lua_checkstack(co, narg)) return luaL_error(L, "too many arguments to resume");
  lua_xmove(L, co, narg);
  return coresume(L, co, narg, wrap);
}

/* Report a failed resume: as Lua does, per resume or wrap. */
static int cofail(lua_State *L, lua_State *co, int wrap, int moved) {
  if (!wrap) {
    lua_pushboolean(L, 0);
    if (moved) lua_insert(L, -2);
    return 2;
  }
  if (moved) {
    int st = lua_status(co);
    if (st != LUA_OK && st != LUA_YIELD) {  /* it died: close its variables */
      st = tsk_closethread(co, L);
      lua_pop(L, 1);
      lua_xmove(co, L, 1);
    }
    if (st != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
      luaL_where(L, 1);
      lua_insert(L, -2);
      lua_concat(L, 2);
    }
  }
  return lua_error(L);
}

static int coresume(lua_State *L, lua_State *co, int narg, int wrap) {
  tsk_Sched *S = tsk_upsched(L);
  for (;;) {
    lua_State *prev = S->pcoro;
    int st, nres;
    S->pcoro = co;
    st = lua_resume(co, L, narg, &nres);
    S->pcoro = prev;
    if (st == LUA_YIELD && nres == 1 && lua_touserdata(co, -1) == SENTINEL) {
      tsk_Tasklet *t = tsk_self(S);
      lua_pop(co, 1);
      if (L == prev && lua_isyieldable(L)) {  /* we can yield too: pass it on */
        lua_pushlightuserdata(L, SENTINEL);
        return lua_yieldk(L, 1, (lua_KContext)wrap, coresumek);
      }
      if (!t->ismain || S->inloop) {
        if (t->status == TSK_BLOCKED) cancelwait(t);
        t->status = S->current == t ? TSK_RUNNING : t->status;
        tsk_checkblock(L, S);  /* raises */
      }
      tsk_drive(L, S, t);
      narg = lua_gettop(L) - (wrap ? 0 : 1);
      lua_xmove(L, co, narg);
      continue;
    }
    if (st == LUA_OK || st == LUA_YIELD) {
      if (!lua_checkstack(L, nres + 1)) {
        lua_pop(co, nres);
        lua_pushliteral(L, "too many results to resume");
        return cofail(L, co, wrap, 1);
      }
      if (!wrap) lua_pushboolean(L, 1);
      lua_xmove(co, L, nres);
      return wrap ? nres : nres + 1;
    }
    lua_xmove(co, L, 1);  /* the error */
    if (iskill(L, S->current)) lua_error(L);  /* a kill goes on up, as it is */
    return cofail(L, co, wrap, 1);
  }
}

/* Can co be resumed? NULL if so, else why not (as Lua words it). */
static const char *coblocked(lua_State *L, lua_State *co) {
  lua_Debug ar;
  int st = lua_status(co);
  if (co == L) return "cannot resume non-suspended coroutine";
  if (st == LUA_YIELD) return NULL;
  if (st != LUA_OK) return "cannot resume dead coroutine";
  if (lua_getstack(co, 0, &ar)) return "cannot resume non-suspended coroutine";
  if (lua_gettop(co) == 0) return "cannot resume dead coroutine";
  return NULL;
}

static int costart(lua_State *L, lua_State *co, int narg, int wrap) {
  const char *why = coblocked(L, co);
  if (why != NULL) {
    lua_pushstring(L, why);
    return cofail(L, co, wrap, 1);
  }
  if (!lua_checkstack(co, narg)) {
    lua_pushliteral(L, "too many arguments to resume");
    return cofail(L, co, wrap, 1);
  }
  lua_xmove(L, co, narg);
  return coresume(L, co, narg, wrap);
}

static int co_resume(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argexpected(L, co != NULL, 1, "coroutine");
  return costart(L, co, lua_gettop(L) - 1, 0);
}

static int co_wrapped(lua_State *L) {
  return costart(L, coarg(L, 1), lua_gettop(L), 1);
}

static int co_wrap(lua_State *L) {
  lua_State *co;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_pushvalue(L, lua_upvalueindex(1));  /* the scheduler */
  co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushcclosure(L, co_wrapped, 2);
  return 1;
}

/* coroutine.running as Lua's, except that a tasklet whose coroutine is
** handed out keeps it to itself once dead: a pooled coroutine must not
** be one that Lua code may still hold (keys of tables, status checks). */
static int co_running(lua_State *L) {
  tsk_Sched *S = tsk_upsched(L);
  int ismain;
  if (S->current != NULL && S->current->L == L) S->current->exposed = 1;
  ismain = lua_pushthread(L);
  lua_pushboolean(L, ismain);
  return 2;
}

/* --- the scheduler object ------------------------------------------- */

static void close_cb(uv_handle_t *h) {
  tsk_Sched *S = (tsk_Sched *)h->data;
  if (--S->nhandles == 0) {
    if (S->ownloop) {
      /* tsk_sched_gc finishes */
    }
    else
      free(S);
  }
}

static void walk_close(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

static int sched_gc(lua_State *L) {
  tsk_Sched *S = *(tsk_Sched **)lua_touserdata(L, 1);
  if (S == NULL) return 0;
  *(tsk_Sched **)lua_touserdata(L, 1) = NULL;
  S->closing = 1;
  if (S->atclose != NULL) S->atclose(S);
  free(S->heap);
  S->heap = NULL;
  free(S->rbuf);  /* no read callback of ours comes after the finalizers */
  S->rbuf = NULL;
  S->nheap = 0;
  tsk_poller_close(S, close_cb);  /* the sockets the finalizers left, if any */
  uv_close((uv_handle_t *)&S->idle, close_cb);
  uv_close((uv_handle_t *)&S->check, close_cb);
  uv_close((uv_handle_t *)&S->timer, close_cb);
  if (S->ownloop) {
    uv_loop_t *loop = S->loop;
    uv_walk(loop, walk_close, NULL);  /* what the finalizers left open */
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    free(loop);
    free(S);
  }
  return 0;
}

tsk_Sched *tsk_sched(lua_State *L) {
  tsk_Sched *S, **box;
  uv_loop_t *loop;
  if (lua_getfield(L, LUA_REGISTRYINDEX, TSK_SCHED_KEY) == LUA_TUSERDATA) {
    S = *(tsk_Sched **)lua_touserdata(L, -1);
    lua_pop(L, 1);
    return S;
  }
  lua_pop(L, 1);
  box = (tsk_Sched **)lua_newuserdatauv(L, sizeof *box, 2);
  *box = NULL;
  S = (tsk_Sched *)calloc(1, sizeof *S);
  if (S == NULL) luaL_error(L, "not enough memory");
  lua_getfield(L, LUA_REGISTRYINDEX, TSK_LOOP_KEY);  /* a host's loop? */
  loop = (uv_loop_t *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (loop == NULL) {
    int r;
    loop = (uv_loop_t *)malloc(sizeof *loop);
    if (loop == NULL || (r = uv_loop_init(loop)) != 0) {
      free(loop);
      free(S);
      luaL_error(L, "cannot create the event loop");
    }
    S->ownloop = 1;
  }
  S->loop = loop;
  S->errref = LUA_NOREF;
  S->main.S = S;
  S->main.ismain = 1;
  S->main.heapidx = -1;
  S->main.status = TSK_RUNNING;
  S->main.ref = LUA_NOREF;
  S->main.L = lua_newthread(L);  /* the main chunk's mailbox */
  lua_setiuservalue(L, -2, 1);
  S->pool = lua_newthread(L);    /* holds the pooled coroutines */
  lua_setiuservalue(L, -2, 2);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  S->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  uv_idle_init(loop, &S->idle);
  uv_check_init(loop, &S->check);
  uv_timer_init(loop, &S->timer);
  S->idle.data = S->check.data = S->timer.data = S;
  S->nhandles = 3;
  S->poller.fd = -1;
  uv_check_start(&S->check, check_cb);
  uv_unref((uv_handle_t *)&S->check);
  *box = S;
  lua_newtable(L);  /* metatable */
  lua_pushcfunction(L, sched_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, TSK_SCHED_KEY);
  return S;
}

void tsk_sched_open(lua_State *L, tsk_Sched *S) {
  static const luaL_Reg funcs[] = {
    {"run", global_run},
    {"stop", global_stop},
    {"sleep", global_sleep},
    {"yield", global_yield},
    {"now", global_now},
    {"onerror", global_onerror},
    {NULL, NULL}
  };
  tsk_setfuncs(L, S, funcs);
  /* the coroutine library's resume and wrap, which pass scheduler yields on */
  if (lua_getglobal(L, "coroutine") == LUA_TTABLE) {
    lua_pushlightuserdata(L, S);
    lua_pushcclosure(L, co_resume, 1);
    lua_setfield(L, -2, "resume");
    lua_pushlightuserdata(L, S);
    lua_pushcclosure(L, co_wrap, 1);
    lua_setfield(L, -2, "wrap");
    lua_pushlightuserdata(L, S);
    lua_pushcclosure(L, co_running, 1);
    lua_setfield(L, -2, "running");
  }
  lua_pop(L, 1);
}
