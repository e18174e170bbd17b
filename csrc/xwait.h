/*
** xwait.h: what crosses OS threads. Messages (values copied out of one
** Lua state, see copy.c), cross-thread channels, and the protocol by which
** a tasklet of one scheduler waits on an object that another thread
** completes (xchannel.c):
**
**   - the waited object has its own mutex and a list of tsk_XWaiter;
**   - the completer, holding that mutex, sets w->state and calls
**     tsk_xwait_complete(w): a C thread's waiter gets its condition
**     signalled; a tasklet's waiter is pushed on its scheduler's hub, whose
**     uv_async_t wakes that loop; the hub's callback drains the whole list
**     (uv_async_send coalesces) and, on the owner's thread, asks
**     w->ops->deliver for the values and tsk_wake()s the tasklet;
**   - a wait that ends otherwise (timeout, kill, the state closing) calls
**     w->ops->detach on the owner's thread, which takes the object's mutex
**     and unlinks w, or undoes what completing it did (a received message
**     goes back to the channel).
** A waiter lives on the owner's hub "active" list from creation until it
** is freed, always on the owner's thread.
*/
#ifndef TSK_XWAIT_H
#define TSK_XWAIT_H

#include "core.h"
#include "copy.h"

typedef struct tsk_Hub tsk_Hub;
typedef struct tsk_XWaiter tsk_XWaiter;

/* w->state */
enum { TSK_XWAITING, TSK_XDONE, TSK_XCLOSED };

/* Extra wresult: delivering the values failed; the error is on top. */
#define TSK_WXERROR 16

typedef struct tsk_XWaitOps {
  /* Owner thread, in a protected call: push the wait's values on L, set
  ** *result (TSK_WOK, TSK_WCLOSED) and return how many were pushed. */
  int (*deliver)(lua_State *L, tsk_XWaiter *w, int *result);
  /* Owner thread: abandon w. Take the object's mutex; if w still waits,
  ** unlink it and return 0; otherwise undo what must be undone and return
  ** 1, or 2 when the wait in fact succeeded (a send was taken). */
  int (*detach)(tsk_XWaiter *w);
  /* Owner thread: drop what w still holds (message, object reference). */
  void (*release)(tsk_XWaiter *w);
} tsk_XWaitOps;

struct tsk_XWaiter {
  tsk_XWaiter *next, *prev;   /* in the object's list (object's mutex) */
  tsk_XWaiter *pnext;         /* in the hub's pending list (hub's mutex) */
  tsk_XWaiter *anext, *aprev; /* in the hub's active list (owner thread) */
  const tsk_XWaitOps *ops;
  tsk_Hub *hub;               /* NULL for a C thread's waiter */
  uv_cond_t *cond;            /* a C thread's waiter: signalled */
  tsk_Tasklet *t;
  void *obj;                  /* what it waits on */
  tsk_Msg *msg;               /* a sender's offer, or what was received */
  int state;                  /* TSK_XWAITING, TSK_XDONE, TSK_XCLOSED */
  int abandoned;              /* detached after completion: drop it */
};

/* A FIFO of waiters, under the waited object's mutex. */
typedef struct tsk_XList {
  tsk_XWaiter *head, *tail;
} tsk_XList;

void tsk_xlist_push(tsk_XList *l, tsk_XWaiter *w);
tsk_XWaiter *tsk_xlist_pop(tsk_XList *l);
void tsk_xlist_remove(tsk_XList *l, tsk_XWaiter *w);

/* The hub of L's scheduler (made by tsk_xchannel_open). */
tsk_Hub *tsk_hub(lua_State *L);

/* A new waiter for the current tasklet (or main chunk) of the hub's
** scheduler; NULL when out of memory. */
tsk_XWaiter *tsk_xwait_new(tsk_Hub *h, tsk_Sched *S, const tsk_XWaitOps *ops,
                           void *obj);

/* Free a waiter that never waited (owner thread). */
void tsk_xwait_free(tsk_XWaiter *w);

/* Hand w to its waiter; the caller holds the object's mutex and has
** set w->state and unlinked w. */
void tsk_xwait_complete(tsk_XWaiter *w);

/* Block the current tasklet on w (linked in its object's list) with the
** continuation k. */
int tsk_xwait_block(lua_State *L, tsk_XWaiter *w, double timeout, int won,
                    lua_KContext ctx, lua_KFunction k);

/* Could L block now? (tsk_checkblock without raising) */
int tsk_xcanblock(lua_State *L, tsk_Sched *S);

/* Was a timed-out wait in fact completed (a send that was taken)? */
int tsk_xwait_lateok(tsk_Tasklet *t);

/* Make m freed if L raises before tsk_hub_unown (cheap protection
** while decoding). */
void tsk_hub_own(tsk_Hub *h, tsk_Msg *m);
void tsk_hub_unown(tsk_Hub *h);

/* Wait on a condition with a timeout in seconds (< 0: forever); the
** mutex is held. Returns 0 when signalled, UV_ETIMEDOUT else. */
int tsk_condwait(uv_cond_t *c, uv_mutex_t *m, double timeout, uint64_t start);

/* --- xchannel.c ------------------------------------------------------- */

#define TSK_XCHANNEL_MT "tasksock.xchannel"

/* Send m (consumed in every case) / receive one, from a thread that may
** block: 0, UV_ETIMEDOUT, UV_EPIPE (closed), UV_ENOMEM. */
/* Register metatable name (a class of the thread layer): __tostring,
** __gc, and methods given S and h as upvalues 1 and 2.  [-0, +0, m] */
void tsk_xclass_new(lua_State *L, const char *name, lua_CFunction tostring,
                    lua_CFunction gc, const luaL_Reg *meths, tsk_Sched *S, tsk_Hub *h);

int tsk_xchannel_sendmsg(tsk_XChannel *x, tsk_Msg *m, double timeout);
int tsk_xchannel_recvmsg(tsk_XChannel *x, tsk_Msg **out, double timeout);

/* --- thread.c --------------------------------------------------------- */

/* Get a chunk ready to run in another state: a string (source, or a file
** path when it ends in ".lua" with no newline) or a Lua function without
** upvalues other than _ENV (dumped). Pushes the bytes; *ispath says. */
void tsk_thread_chunk(lua_State *L, int arg, int *ispath);

/* Prepare a new state for a thread: its libraries, package paths, and
** tasksock preloaded from this very copy of the code. */
void tsk_thread_prepare(lua_State *L, const char *path, const char *cpath);

/* --- embed.c ---------------------------------------------------------- */

/* package.preload["tasksock.core"] (and "tasksock" when its Lua face is
** not on package.path) = this copy's luaopen_tasksock_core. */
void tsk_embed_preload(lua_State *L);

#endif
