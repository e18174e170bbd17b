/*
** core.h: tasksock's internal interface between the scheduler and the
** primitives that block (timers, channels, sockets, threads).
**
** The contract every blocking primitive follows:
**   1. Try the operation. If it completes, return its results at once.
**   2. Otherwise link the current tasklet into what it waits on (a
**      tsk_Queue, or a pointer kept by the object), set t->wcancel if
**      more than unlinking is needed to abandon the wait, and return
**      tsk_wait(L, t, timeout, ctx, k).
**   3. Whoever completes the wait calls tsk_wake(t, result, from, n),
**      which unlinks the tasklet from its queue and timer and queues it.
**   4. k(L, status, ctx) runs in the tasklet (or, in the main chunk, right
**      after the loop was driven): t->wresult says why the wait ended and
**      the n values given to tsk_wake are on top of L's stack.
** Only the scheduler resumes tasklets. A kill cancels the wait (queue,
** timer, wcancel) and raises in the tasklet instead of calling k.
*/
#ifndef TSK_CORE_H
#define TSK_CORE_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>
#include <lauxlib.h>
#include <uv.h>

#include "compat.h"

#if defined(__GNUC__)
#define TSK_EXPORT __attribute__((visibility("default")))
#define TSK_INLINE static inline __attribute__((always_inline))
#else
#define TSK_EXPORT
#define TSK_INLINE static inline
#endif

typedef struct tsk_Sched tsk_Sched;
typedef struct tsk_Tasklet tsk_Tasklet;

/* A FIFO of tasklets, a ring linked through their next/prev fields:
** head->prev is the tail. One pointer, as every socket holds two. */
typedef struct tsk_Queue {
  tsk_Tasklet *head;
} tsk_Queue;

/* Tasklet status, as t:status() names them. */
enum { TSK_READY, TSK_RUNNING, TSK_BLOCKED, TSK_DEAD };

/* A pending kill (t->kill): raise when resumed, or (its wait was over and
** delivered values, which must not be lost) at its next blocking call. */
enum { TSK_KILL_NOW = 1, TSK_KILL_LATER = 2 };

/* Why a wait ended (t->wresult); negative values are libuv error codes. */
enum { TSK_WOK = 0, TSK_WTIMEOUT = 1, TSK_WCLOSED = 2,
       TSK_WDONE = 3 /* the waker delivered the call's results */ };

/* What a tasklet waits on, for introspection (ts.tasklets()). */
enum {
  TSK_ON_NOTHING, TSK_ON_SLEEP, TSK_ON_YIELD, TSK_ON_JOIN, TSK_ON_CHANNEL,
  TSK_ON_SOCKET, TSK_ON_DNS, TSK_ON_THREAD, TSK_ON_WORK, TSK_ON_SELECT,
  TSK_ON_OTHER
};

struct tsk_Tasklet {        /* (laid out to fill 112 bytes: one per
                              connection in a server) */
  lua_State *L;            /* its coroutine; resume values are delivered here */
  tsk_Sched *S;
  tsk_Tasklet *next, *prev;  /* links in the run queue or one wait queue */
  tsk_Queue *queue;        /* the queue it is linked in, or NULL */
  tsk_Queue joiners;       /* tasklets blocked in join on this one */
  void *wobj;              /* the object it waits on (wcancel's business) */
  void (*wcancel)(tsk_Tasklet *t);  /* undo a wait beyond queue and timer */
  lua_State *wL;           /* the thread whose C frame is blocked (may be a
                              coroutine nested in the tasklet) */
  lua_KFunction wk;        /* continuation of the blocked call */
  lua_KContext wctx;
  int heapidx;             /* index in the timer heap (its deadline is
                              there), or -1 */
  union {
    int nargs;             /* alive: values on L's top for its next resume */
    int nres;              /* dead: results kept on L's stack for join */
  };
  int ref;                 /* its slot in S->anchors while not dead */
  uint32_t wsince;         /* uv_now() (ms, loop time, modulo 2^32) when
                              the wait began */
  int16_t wresult;         /* why the last wait ended: TSK_W*, or a libuv
                              error code (all above -4096) */
  unsigned char status;    /* TSK_READY ... TSK_DEAD */
  unsigned char won;       /* TSK_ON_*: what it waits on */
  unsigned char kill;      /* a kill is pending: TSK_KILL_NOW raises at the
                              next resume, TSK_KILL_LATER at the next
                              blocking call */
  unsigned char xkind;     /* what its user value is (tasklet.c, X_IS*) */
  unsigned char started : 1;  /* it has been resumed once */
  unsigned char killing : 1;  /* a kill was raised and is unwinding */
  unsigned char killed : 1;   /* kill() was called on it */
  unsigned char ok : 1;       /* dead: returned (1) or failed (0) */
  unsigned char ismain : 1;   /* the main chunk's record, not a tasklet */
  unsigned char exposed : 1;  /* its coroutine was handed to Lua code
                                 (coroutine.running): never pooled */
};

/* A timer heap entry: a tasklet's timeout. */
typedef struct tsk_Timer {
  uint64_t deadline;       /* uv_hrtime() ns */
  tsk_Tasklet *t;
} tsk_Timer;

/* The scheduler's own readiness set for its stream sockets (poller.c):
** one poll of the loop watches it, and each socket's descriptor joins it
** with no system call beyond epoll_ctl's own. */
typedef struct tsk_Io tsk_Io;
typedef struct tsk_Poller {
  int fd;                  /* the set (epoll), or -1 until the first socket */
  int nref;                /* polled ios that keep the loop alive */
  uv_poll_t h;             /* the loop's poll of fd, started with the set */
  tsk_Io *open;            /* the ios not closed, linked */
  tsk_Io *closed;          /* closed ones, freed once this turn's callbacks
                              are over */
  void *ev;                /* the events being dispatched (struct
                              epoll_event[TSK_POLLER_BATCH]), or NULL */
  int evn;                 /* how many of them; 0 while not dispatching */
  int nbyfd;
  tsk_Io **byfd;           /* the io in the set for each descriptor, or
                              NULL: events name descriptors, as libuv's do,
                              so a stale one finds nothing to call */
} tsk_Poller;

struct tsk_Sched {
  lua_State *L;            /* the main thread of the Lua state */
  uv_loop_t *loop;
  int ownloop;             /* we made loop and must close it */
  int nhandles;            /* our handles not yet closed */
  tsk_Tasklet *current;    /* the tasklet being resumed, or NULL */
  lua_State *pcoro;        /* the coroutine we resumed last: a scheduler
                              yield from it reaches us */
  tsk_Tasklet main;        /* stands for the main chunk when it blocks */
  tsk_Queue runq;
  uv_idle_t idle;          /* active while tasklets are ready: no blocking poll */
  int idling;              /* idle is started */
  uv_check_t check;        /* resumes tasklets woken by I/O in the same turn */
  uv_timer_t timer;        /* armed for the earliest deadline in the heap */
  tsk_Timer *heap;         /* timer heap, min deadline first */
  int nheap, heapcap;
  uint64_t armed;          /* the deadline the timer is armed for, 0 if none */
  int inloop;              /* inside uv_run, driven by us */
  int budget;              /* resumes left in this turn of the loop */
  uint64_t slice;          /* uv_hrtime() when this turn's resumes began */
  int handing;             /* a tasklet runs others inside its wait
                              (sched.c, handoff): one level only */
  int running;             /* inside ts.run() */
  int stopping;            /* ts.stop() was called during ts.run() */
  int closing;             /* the Lua state is closing: wake nobody */
  int errref;              /* registry ref of the error handler, or LUA_NOREF */
  long ntasklets;          /* live (not dead) tasklets */
  int anchors;             /* registry ref of the table holding the live
                              tasklets, each at its t->ref (tasklet.c) */
  int afree, atop;         /* its free slots' list (0: none); slots used */
#define TSK_NCLASSES 16
  struct {                 /* class metatables by name address */
    const char *name;      /* (socket.c, tsk_class_set) */
    int ref;               /* registry ref of the metatable */
  } classes[TSK_NCLASSES];
  int nclasses;
  lua_State *pool;         /* finished coroutines kept for new tasklets,
                              on this thread's stack */
  int npool;
  /* statistics, ts.stats() */
  uint64_t switches, spawned;
  uint64_t bytesin, bytesout;
  long nsockets;
  void *lingering;         /* closed sockets delivering a write (tcp.c) */
  char *rbuf;              /* where stream sockets read small messages
                              (tcp.c), TSK_RBUF bytes, or NULL */
  void (*atclose)(tsk_Sched *S);  /* run first when the state closes */
  tsk_Poller poller;
};

/* At most this many finished coroutines wait in S->pool for a new
** tasklet (about 1 KiB each): a spawn then allocates no Lua thread. */
#define TSK_POOL_MAX 256

/* The size of S->rbuf, the read buffer stream sockets share. */
#define TSK_RBUF (64 * 1024)

/* Registry names of the metatables. */
#define TSK_TASKLET_MT "tasksock.tasklet"
#define TSK_CHANNEL_MT "tasksock.channel"
#define TSK_SCHED_KEY  "tasksock.sched"
#define TSK_LOOP_KEY   "tasksock.loop"   /* light userdata: a host's uv_loop_t */

/* --- sched.c -------------------------------------------------------- */

/* The scheduler of L's state; creates it on first use. */
tsk_Sched *tsk_sched(lua_State *L);

/* The tasklet that a blocking call from L would suspend: the current
** tasklet, or the main record when no tasklet runs. */
static inline tsk_Tasklet *tsk_self(tsk_Sched *S) {
  return S->current ? S->current : &S->main;
}

/* Seconds since an arbitrary point, monotonic. */
double tsk_now(void);

/*
** Suspend t until tsk_wake or the timeout (seconds; < 0 waits forever,
** 0 makes it time out on the next turn of the loop) and continue with k.
** The caller has linked t into what it waits on and set t->won/wobj.
** Raises a Lua error if L cannot block here.
*/
int tsk_wait(lua_State *L, tsk_Tasklet *t, double timeout, lua_KContext ctx,
             lua_KFunction k);

/* Raise unless L could block now (use before starting work that cannot be
** undone, e.g. a libuv request). */
void tsk_checkblock(lua_State *L, tsk_Sched *S);

/*
** End t's wait with result, moving n values from the top of from's stack
** to t (from may be NULL when n is 0, or t->L when the waker pushed them
** there). Does nothing (but pop them) unless t is blocked.
*/
void tsk_wake(tsk_Tasklet *t, int result, lua_State *from, int n);

/* Make t ready again at the end of the run queue (ts.yield). */
void tsk_ready(tsk_Tasklet *t);

/* Queue primitives (inline: every switch uses a few). */
static inline void tsk_queue_push(tsk_Queue *q, tsk_Tasklet *t) {
  tsk_Tasklet *h = q->head;
  if (h == NULL)
    q->head = t->next = t->prev = t;
  else {
    t->next = h;
    t->prev = h->prev;
    h->prev->next = t;
    h->prev = t;
  }
  t->queue = q;
}

/* Push t first in q (a woken head that must wait again keeps its place). */
static inline void tsk_queue_pushfront(tsk_Queue *q, tsk_Tasklet *t) {
  tsk_queue_push(q, t);
  q->head = t;
}

static inline void tsk_queue_remove(tsk_Tasklet *t) {
  tsk_Queue *q = t->queue;
  if (q == NULL) return;
  if (t->next == t)
    q->head = NULL;
  else {
    t->prev->next = t->next;
    t->next->prev = t->prev;
    if (q->head == t) q->head = t->next;
  }
  t->next = t->prev = NULL;
  t->queue = NULL;
}

static inline tsk_Tasklet *tsk_queue_pop(tsk_Queue *q) {
  tsk_Tasklet *t = q->head;
  if (t) tsk_queue_remove(t);
  return t;
}

/* How many tasklets q holds (a walk: for introspection only). */
static inline int tsk_queue_count(const tsk_Queue *q) {
  const tsk_Tasklet *t = q->head;
  int n = 0;
  if (t != NULL) do n++; while ((t = t->next) != q->head);
  return n;
}

/* Wake every tasklet in q with result (closing an object). */
void tsk_queue_wakeall(tsk_Queue *q, int result);

/* Drive the loop from the main chunk until t (the main record) is woken. */
void tsk_drive(lua_State *L, tsk_Sched *S, tsk_Tasklet *t);

/* Scheduler functions for Lua, and the coroutine library's replacements. */
void tsk_sched_open(lua_State *L, tsk_Sched *S);

/* --- tasklet.c ------------------------------------------------------ */

void tsk_tasklet_open(lua_State *L);
/* Spawn a tasklet from the n values on top of L's stack: a function and
** its n-1 arguments. Pops them, pushes the tasklet. [-n, +1, m] */
tsk_Tasklet *tsk_spawn(lua_State *L, tsk_Sched *S, int n);
/* Called by the scheduler when t's coroutine returned (ok) or failed. */
void tsk_tasklet_finish(tsk_Sched *S, tsk_Tasklet *t, int ok, int nres);
const char *tsk_tasklet_name(lua_State *L, tsk_Tasklet *t);

/* Hold the value on top of L's stack (popping it) until tsk_unanchor
** frees the slot returned (> 0); S->anchors, tasklet.c.  [-1, +0, m] */
int tsk_anchor(lua_State *L, tsk_Sched *S);
void tsk_unanchor(tsk_Sched *S, int ref);

/* The next live tasklet after *slot in S->anchors (start with *slot 0),
** or NULL when there is none: the live tasklets in no set order.  [-0, +0, -] */
tsk_Tasklet *tsk_tasklet_next(lua_State *L, tsk_Sched *S, int *slot);
/* Push the reason t was killed with (t->killed; t alive). [-0, +1] */
void tsk_tasklet_reason(lua_State *L, tsk_Tasklet *t);

/* --- signal.c ------------------------------------------------------- */

void tsk_signal_open(lua_State *L);

/* --- channel.c ------------------------------------------------------ */

void tsk_channel_open(lua_State *L);

/* --- dns.c (the rest of its interface is in dns.h) ------------------ */

void tsk_dns_open(lua_State *L);

/* --- udp.c: udp, udp4, udp6 into the _socket table of the module ---- */

void tsk_udp_open(lua_State *L);

/* --- tcp.c (shared socket pieces: socket.h, buffer.h) --------------- */

/* tcp/tcp4/tcp6 into the table "_socket" of the module table on top. */
void tsk_tcp_open(lua_State *L);

/* --- tcp.c also: socket.unix's streams into the table "_unix" ------ */

void tsk_unix_open(lua_State *L);

/* --- unixdgram.c: socket.unix's datagrams (dgram) into "_unix" ------ */

void tsk_unixdgram_open(lua_State *L);

/* --- select.c: socket.select into the table "_socket" (socket.h) --- */

void tsk_select_open(lua_State *L);

/* --- xchannel.c, thread.c: threads (the rest is in xwait.h) --------- */

/* ts.xchannel; call before tsk_thread_open. */
void tsk_xchannel_open(lua_State *L);
/* ts.thread (start, pool) and ts.work. */
void tsk_thread_open(lua_State *L);

/* --- helpers (sched.c) ---------------------------------------------- */

/* Read an optional timeout argument: nil or negative is -1 (forever). */
double tsk_opttimeout(lua_State *L, int arg);

/* Push nil, msg and return 2: the failure convention. */
int tsk_fail(lua_State *L, const char *msg);

/* Are the values at a and b the same (raw equality, and NaN is NaN: a kill
** reason is recognized by it)? */
int tsk_samevalue(lua_State *L, int a, int b);

/* Register funcs with the scheduler as their one upvalue, into the table
** on top of the stack. */
void tsk_setfuncs(lua_State *L, tsk_Sched *S, const luaL_Reg *l);

/* The userdata at arg if its metatable is the running C function's
** upvalue up (a cached metatable: no registry look-up), else raise an
** argument error naming tname. */
void *tsk_checkudata(lua_State *L, int arg, int up, const char *tname);

/* The scheduler in a C function registered with tsk_setfuncs. */
#define tsk_upsched(L) ((tsk_Sched *)lua_touserdata((L), lua_upvalueindex(1)))

#endif
