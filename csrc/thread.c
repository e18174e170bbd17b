/*
** thread.c: OS threads with their own Lua state (ts.thread.start), and a
** pool of worker states for blocking work (ts.work).
**
** A thread gets a fresh state with the standard libraries, the package
** paths of the state that started it, and tasksock preloaded from this
** very copy of the code; its chunk runs with copies of the arguments,
** and its results (or its error with a traceback) are copied back as a
** message that join() decodes. Waiting for a thread or a job is a
** cross-thread wait (xwait.h), so it blocks only the calling tasklet.
**
** Lifetimes. A thread record is refcounted (the handle, the running
** thread, the owner's list, each waiter). The state that started a
** thread joins it (uv_thread_join) once it is done: when join() returns
** it, on the next thread.start, or at the latest when the state closes,
** which waits for every thread it started, so no thread outlives the
** code it runs. Likewise the pool joins its workers when the state closes.
*/
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "xwait.h"

#define THREAD_MT   "tasksock.thread"
#define THREADS_KEY "tasksock.threads"
#define POOL_KEY    "tasksock.pool"
#define CHUNKS_KEY  "tasksock.chunks"   /* a worker's compiled chunks */
#define MAXCHUNKS   64

/* --- shared helpers ------------------------------------------------- */

static int dumpwriter(lua_State *L, const void *p, size_t sz, void *ud) {
  (void)L;
  luaL_addlstring((luaL_Buffer *)ud, (const char *)p, sz);
  return 0;
}

void tsk_thread_chunk(lua_State *L, int arg, int *ispath) {
  arg = lua_absindex(L, arg);
  *ispath = 0;
  if (lua_type(L, arg) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, arg, &len);
    *ispath = len > 4 && memchr(s, '\n', len) == NULL &&
              strcmp(s + len - 4, ".lua") == 0;
    lua_pushvalue(L, arg);
    return;
  }
  if (lua_type(L, arg) == LUA_TFUNCTION && !lua_iscfunction(L, arg)) {
    luaL_Buffer b;
    const char *name;
    int i;
    for (i = 1; (name = lua_getupvalue(L, arg, i)) != NULL; i++) {
      lua_pop(L, 1);
      if (strcmp(name, "_ENV") != 0 || i != 1)
        luaL_argerror(L, arg, lua_pushfstring(L,
          "the function uses the upvalue '%s': only globals can cross to "
          "another state (pass values as arguments)", name));
    }
    lua_pushvalue(L, arg);
    luaL_buffinit(L, &b);
    lua_rotate(L, -2, -1);  /* keep the function on top for lua_dump */
    lua_dump(L, dumpwriter, &b, 0);
    lua_pop(L, 1);
    luaL_pushresult(&b);
    return;
  }
  luaL_typeerror(L, arg, "string or Lua function");
}

static void setpath(lua_State *L, const char *field, const char *value) {
  if (value == NULL) return;
  lua_getglobal(L, "package");
  lua_pushstring(L, value);
  lua_setfield(L, -2, field);
  lua_pop(L, 1);
}

void tsk_thread_prepare(lua_State *L, const char *path, const char *cpath) {
  luaL_openlibs(L);
  setpath(L, "path", path);
  setpath(L, "cpath", cpath);
  tsk_embed_preload(L);
}

/* strdup of package[field] in L, or NULL */
static char *getpath(lua_State *L, const char *field) {
  const char *s;
  char *d = NULL;
  lua_getglobal(L, "package");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, field);
    s = lua_tostring(L, -1);
    if (s != NULL && (d = (char *)malloc(strlen(s) + 1)) != NULL) strcpy(d, s);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return d;
}

static char *memdup(const char *p, size_t len) {
  char *d = (char *)malloc(len + 1);
  if (d != NULL) {
    memcpy(d, p, len);
    d[len] = '\0';
  }
  return d;
}

/* Message handler: the error with a traceback, when it is a string. */
static int msgh(lua_State *L) {
  if (lua_type(L, 1) == LUA_TSTRING) luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

typedef struct Run {
  const char *chunk;
  size_t chunklen;
  int ispath;
  int cache;              /* keep the compiled chunk (workers) */
  const tsk_Msg *args;
  tsk_Msg *result;
} Run;

static void loadchunk(lua_State *L, Run *r) {
  int st;
  if (r->cache) {
    if (lua_getfield(L, LUA_REGISTRYINDEX, CHUNKS_KEY) != LUA_TTABLE) {
      lua_pop(L, 1);
      lua_newtable(L);
      lua_pushvalue(L, -1);
      lua_setfield(L, LUA_REGISTRYINDEX, CHUNKS_KEY);
    }
    lua_pushlstring(L, r->chunk, r->chunklen);
    if (lua_rawget(L, -2) == LUA_TFUNCTION) {
      lua_remove(L, -2);
      return;
    }
    lua_pop(L, 1);
  }
  if (r->ispath) st = luaL_loadfilex(L, r->chunk, "bt");
  else st = luaL_loadbufferx(L, r->chunk, r->chunklen, r->chunk, "bt");
  if (st != LUA_OK) lua_error(L);
  if (r->cache) {  /* cache it, dropping all when full */
    lua_Integer n = (lua_Integer)luaL_len(L, -2);
    if (n >= MAXCHUNKS) {
      lua_newtable(L);
      lua_replace(L, -3);
      lua_pushvalue(L, -2);
      lua_setfield(L, LUA_REGISTRYINDEX, CHUNKS_KEY);
      n = 0;
    }
    lua_pushlstring(L, r->chunk, r->chunklen);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
    lua_pushboolean(L, 1);
    lua_rawseti(L, -3, n + 1);  /* counts entries */
    lua_remove(L, -2);
  }
}

/* Protected: run r's chunk with its arguments, set r->result. */
static int run_p(lua_State *L) {
  Run *r = (Run *)lua_touserdata(L, 1);
  int n, st;
  lua_settop(L, 0);
  lua_pushcfunction(L, msgh);  /* 1 */
  loadchunk(L, r);             /* 2 */
  n = tsk_copy_decode(L, r->args);
  st = lua_pcall(L, n, LUA_MULTRET, 1);
  lua_pushboolean(L, st == LUA_OK);
  lua_replace(L, 1);           /* ok, results... | ok, err */
  r->result = tsk_copy_encode(L, 1, lua_gettop(L), 1,
                              st == LUA_OK ? "result" : "error");
  return 0;
}

/* Run r in L, protected; on any failure r->result says why. */
static void run(lua_State *L, Run *r) {
  r->result = NULL;
  lua_pushcfunction(L, run_p);
  lua_pushlightuserdata(L, r);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    const char *e = lua_tostring(L, -1);
    tsk_msg_free(r->result);
    r->result = tsk_msg_failure(e ? e : "error object is not a string");
  }
  lua_settop(L, 0);
}

typedef struct Prep { const char *path, *cpath; } Prep;

static int prepare_p(lua_State *L) {
  Prep *p = (Prep *)lua_touserdata(L, 1);
  tsk_thread_prepare(L, p->path, p->cpath);
  return 0;
}

/* A new state for a thread, or NULL with *err set. */
static lua_State *newstate(const char *path, const char *cpath, tsk_Msg **err) {
  lua_State *L = luaL_newstate();
  Prep p;
  p.path = path;
  p.cpath = cpath;
  if (L == NULL) {
    *err = tsk_msg_failure("cannot create a Lua state: not enough memory");
    return NULL;
  }
  lua_pushcfunction(L, prepare_p);
  lua_pushlightuserdata(L, &p);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    *err = tsk_msg_failure(lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
    lua_close(L);
    return NULL;
  }
  return L;
}

/* --- threads -------------------------------------------------------- */

typedef struct Thread {
  uv_mutex_t mu;
  int refs;                 /* atomic */
  uv_thread_t tid;
  int done;                 /* (mu) result is set and the state closed */
  int reaped;               /* owner: uv_thread_join done */
  char *chunk;
  size_t chunklen;
  int ispath;
  char *path, *cpath;
  tsk_Msg *args;
  tsk_Msg *result;          /* (true, results...) | (false, err) */
  tsk_XList joiners;        /* (mu) */
  struct Thread *next;      /* in the owner's list */
} Thread;

typedef struct ThreadList {
  Thread *head;
} ThreadList;

static void thread_unref(Thread *th) {
  if (__atomic_sub_fetch(&th->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
  free(th->chunk);
  free(th->path);
  free(th->cpath);
  tsk_msg_free(th->args);
  tsk_msg_free(th->result);
  uv_mutex_destroy(&th->mu);
  free(th);
}

static void thread_ref(Thread *th) {
  __atomic_add_fetch(&th->refs, 1, __ATOMIC_RELAXED);
}

static void thread_main(void *arg) {
  Thread *th = (Thread *)arg;
  tsk_Msg *result = NULL;
  tsk_XWaiter *w;
  lua_State *L = newstate(th->path, th->cpath, &result);
  if (L != NULL) {
    Run r = {th->chunk, th->chunklen, th->ispath, 0, th->args, NULL};
    run(L, &r);
    result = r.result;
    lua_close(L);  /* its own threads and handles end here */
  }
  uv_mutex_lock(&th->mu);
  th->result = result;
  th->done = 1;
  while ((w = tsk_xlist_pop(&th->joiners)) != NULL) {
    w->state = TSK_XDONE;
    tsk_xwait_complete(w);
  }
  uv_mutex_unlock(&th->mu);
  thread_unref(th);
}

static void reap(Thread *th) {
  if (!th->reaped) {
    uv_thread_join(&th->tid);
    th->reaped = 1;
  }
}

static int isdone(Thread *th) {
  int d;
  uv_mutex_lock(&th->mu);
  d = th->done;
  uv_mutex_unlock(&th->mu);
  return d;
}

/* Join the threads of the list that are done (all, if wait). */
static void sweep(ThreadList *tl, int wait) {
  Thread **p = &tl->head;
  while (*p != NULL) {
    Thread *th = *p;
    if (wait || th->reaped || isdone(th)) {
      reap(th);
      *p = th->next;
      thread_unref(th);
    }
    else
      p = &th->next;
  }
}

static int threads_gc(lua_State *L) {
  sweep((ThreadList *)lua_touserdata(L, 1), 1);
  return 0;
}

static Thread *checkthread(lua_State *L, int arg) {
  Thread *th = *(Thread **)luaL_checkudata(L, arg, THREAD_MT);
  /* its finalizer ran (it was reached again from another finalizer) */
  if (th == NULL) luaL_argerror(L, arg, "thread handle already finalized");
  return th;
}

/* Push what join returns for a finished thread. */
static int joinresults(lua_State *L, Thread *th) {
  if (th->result == NULL) {
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "not enough memory for the thread's results");
    return 2;
  }
  return tsk_copy_decode(L, th->result);
}

static int join_deliver(lua_State *L, tsk_XWaiter *w, int *result) {
  *result = TSK_WOK;
  return joinresults(L, (Thread *)w->obj);
}

static int join_detach(tsk_XWaiter *w) {
  Thread *th = (Thread *)w->obj;
  int r = 1;
  uv_mutex_lock(&th->mu);
  if (w->state == TSK_XWAITING) {
    tsk_xlist_remove(&th->joiners, w);
    r = 0;
  }
  uv_mutex_unlock(&th->mu);
  return r;
}

static void join_release(tsk_XWaiter *w) { thread_unref((Thread *)w->obj); }

static const tsk_XWaitOps join_ops = {join_deliver, join_detach, join_release};

static int joink(lua_State *L, int status, lua_KContext ctx) {
  tsk_Sched *S = (tsk_Sched *)lua_touserdata(L, lua_upvalueindex(1));
  tsk_Tasklet *t = tsk_self(S);
  (void)status;
  if (t->wresult == TSK_WTIMEOUT) return tsk_fail(L, "timeout");
  if (t->wresult == TSK_WXERROR) return lua_error(L);
  reap((Thread *)ctx);  /* it is done: the OS thread ends now */
  return lua_gettop(L) - 1;  /* what was delivered, above the handle */
}

/* th:join([timeout]): true, results... | false, err | nil, "timeout" */
static int meth_join(lua_State *L) {
  Thread *th = checkthread(L, 1);
  double timeout = tsk_opttimeout(L, 2);
  tsk_Sched *S = (tsk_Sched *)lua_touserdata(L, lua_upvalueindex(1));
  tsk_Hub *h = (tsk_Hub *)lua_touserdata(L, lua_upvalueindex(2));
  tsk_XWaiter *w;
  lua_settop(L, 1);
  uv_mutex_lock(&th->mu);
  if (!th->done && timeout != 0 && tsk_xcanblock(L, S) &&
      (w = tsk_xwait_new(h, S, &join_ops, th)) != NULL) {
    thread_ref(th);
    tsk_xlist_push(&th->joiners, w);
    uv_mutex_unlock(&th->mu);
    return tsk_xwait_block(L, w, timeout, TSK_ON_THREAD, (lua_KContext)th, joink);
  }
  if (th->done) {
    uv_mutex_unlock(&th->mu);
    reap(th);
    return joinresults(L, th);
  }
  uv_mutex_unlock(&th->mu);
  if (timeout == 0) return tsk_fail(L, "timeout");
  tsk_checkblock(L, S);
  return luaL_error(L, "not enough memory");
}

static int meth_gc(lua_State *L) {
  Thread **box = (Thread **)luaL_testudata(L, 1, THREAD_MT);
  if (box == NULL) return 0;  /* called by hand on something else */
  if (*box != NULL) thread_unref(*box);  /* the owner's list joins it */
  *box = NULL;
  return 0;
}

static int meth_tostring(lua_State *L) {
  Thread *th = *(Thread **)luaL_checkudata(L, 1, THREAD_MT);
  if (th == NULL) {
    lua_pushliteral(L, "thread (finalized)");
    return 1;
  }
  lua_pushfstring(L, "thread (%s): %p", isdone(th) ? "done" : "running", (void *)th);
  return 1;
}

static int meth_done(lua_State *L) {
  lua_pushboolean(L, isdone(checkthread(L, 1)));
  return 1;
}

/* ts.thread.start(source_or_path, ...): a handle */
static int thread_start(lua_State *L) {
  ThreadList *tl = (ThreadList *)lua_touserdata(L, lua_upvalueindex(3));
  int n = lua_gettop(L), ispath, r;
  size_t len;
  const char *chunk;
  Thread *th, **box;
  tsk_Msg *args;
  luaL_checkany(L, 1);
  sweep(tl, 0);
  tsk_thread_chunk(L, 1, &ispath);             /* chunk bytes on top */
  box = (Thread **)lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, THREAD_MT);
  args = tsk_copy_encode(L, 2, n - 1, 0, "arg");  /* errors before any effect */
  chunk = lua_tolstring(L, -2, &len);
  th = (Thread *)calloc(1, sizeof *th);
  if (th == NULL || uv_mutex_init(&th->mu) != 0) {
    free(th);
    tsk_msg_free(args);
    return luaL_error(L, "not enough memory");
  }
  th->refs = 3;  /* handle, thread, list */
  th->args = args;
  th->ispath = ispath;
  th->chunklen = len;
  th->chunk = memdup(chunk, len);
  th->path = getpath(L, "path");
  th->cpath = getpath(L, "cpath");
  if (th->chunk == NULL) r = UV_ENOMEM;
  else r = uv_thread_create(&th->tid, thread_main, th);
  if (r != 0) {
    th->refs = 1;
    thread_unref(th);
    return tsk_fail(L, uv_strerror(r));
  }
  th->next = tl->head;
  tl->head = th;
  *box = th;
  return 1;
}

/* --- the pool ------------------------------------------------------- */

enum { JQUEUED, JRUNNING, JDONE };

typedef struct Job {
  struct Job *next;
  struct Pool *pool;
  char *chunk;
  size_t chunklen;
  int ispath;
  tsk_Msg *args, *result;
  tsk_XWaiter *w;           /* (pool mu) NULL once abandoned */
  int state;                /* (pool mu) */
} Job;

typedef struct Worker {
  struct Worker *next;
  struct Pool *pool;
  uv_thread_t tid;
  char *path, *cpath;
  int exited;               /* (pool mu) */
} Worker;

typedef struct Pool {
  uv_mutex_t mu;
  uv_cond_t cv;
  Job *head, *tail;         /* queued jobs */
  int size, nworkers, nidle, stopping;
  Worker *workers;          /* every worker not yet joined (owner) */
} Pool;

static void job_free(Job *j) {
  free(j->chunk);
  tsk_msg_free(j->args);
  tsk_msg_free(j->result);
  free(j);
}

static void worker_main(void *arg) {
  Worker *wk = (Worker *)arg;
  Pool *P = wk->pool;
  lua_State *L = NULL;
  uv_mutex_lock(&P->mu);
  for (;;) {
    Job *j;
    if (P->stopping) break;
    if ((j = P->head) == NULL) {
      if (P->nworkers > P->size) break;  /* the pool shrank */
      P->nidle++;
      uv_cond_wait(&P->cv, &P->mu);
      P->nidle--;
      continue;
    }
    P->head = j->next;
    if (P->head == NULL) P->tail = NULL;
    j->state = JRUNNING;
    uv_mutex_unlock(&P->mu);
    if (L == NULL) L = newstate(wk->path, wk->cpath, &j->result);
    if (L != NULL) {
      Run r = {j->chunk, j->chunklen, j->ispath, 1, j->args, NULL};
      run(L, &r);
      j->result = r.result;
    }
    uv_mutex_lock(&P->mu);
    j->state = JDONE;
    if (j->w == NULL) job_free(j);  /* its caller gave up */
    else {
      j->w->state = TSK_XDONE;
      tsk_xwait_complete(j->w);
    }
  }
  P->nworkers--;
  wk->exited = 1;
  uv_mutex_unlock(&P->mu);
  if (L != NULL) lua_close(L);
}

/* Join the workers that left (all, if wait: the pool is stopping). */
static void pool_reap(Pool *P, int wait) {
  Worker **p = &P->workers;
  while (*p != NULL) {
    Worker *wk = *p;
    int gone;
    uv_mutex_lock(&P->mu);
    gone = wk->exited;
    uv_mutex_unlock(&P->mu);
    if (gone || wait) {
      uv_thread_join(&wk->tid);
      *p = wk->next;
      free(wk->path);
      free(wk->cpath);
      free(wk);
    }
    else
      p = &wk->next;
  }
}

static int work_deliver(lua_State *L, tsk_XWaiter *w, int *result) {
  Job *j = (Job *)w->obj;
  *result = TSK_WOK;
  if (w->state != TSK_XDONE) {
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "the worker pool was closed");
    return 2;
  }
  if (j->result == NULL) {
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "not enough memory for the job's results");
    return 2;
  }
  return tsk_copy_decode(L, j->result);
}

static int work_detach(tsk_XWaiter *w) {
  Job *j = (Job *)w->obj;
  Pool *P = j->pool;
  int r = 1;
  uv_mutex_lock(&P->mu);
  if (w->state == TSK_XWAITING) {
    r = 0;
    if (j->state == JQUEUED) {  /* never started: drop it */
      Job **p = &P->head, *prev = NULL;
      while (*p != j) {
        prev = *p;
        p = &(*p)->next;
      }
      *p = j->next;
      if (P->tail == j) P->tail = prev;
      job_free(j);
    }
    else
      j->w = NULL;  /* running: the worker frees it */
  }
  else
    job_free(j);  /* finished or dropped: nobody else holds it */
  w->obj = NULL;
  uv_mutex_unlock(&P->mu);
  return r;
}

static void work_release(tsk_XWaiter *w) {
  if (w->obj != NULL) job_free((Job *)w->obj);
  w->obj = NULL;
}

static const tsk_XWaitOps work_ops = {work_deliver, work_detach, work_release};

static int workk(lua_State *L, int status, lua_KContext ctx) {
  tsk_Sched *S = (tsk_Sched *)lua_touserdata(L, lua_upvalueindex(1));
  tsk_Tasklet *t = tsk_self(S);
  (void)status; (void)ctx;
  if (t->wresult == TSK_WXERROR) return lua_error(L);
  if (!lua_toboolean(L, 1)) {
    lua_settop(L, 2);
    return lua_error(L);  /* the worker's error, with its traceback */
  }
  return lua_gettop(L) - 1;
}

static int startworker(lua_State *L, Pool *P) {
  Worker *wk = (Worker *)calloc(1, sizeof *wk);
  int r;
  if (wk == NULL) return UV_ENOMEM;
  wk->pool = P;
  wk->path = getpath(L, "path");
  wk->cpath = getpath(L, "cpath");
  r = uv_thread_create(&wk->tid, worker_main, wk);
  if (r != 0) {
    free(wk->path);
    free(wk->cpath);
    free(wk);
    return r;
  }
  P->nworkers++;
  wk->next = P->workers;
  P->workers = wk;
  return 0;
}

/* ts.work(chunk, ...): run chunk(...) on a worker state; its results */
static int global_work(lua_State *L) {
  tsk_Sched *S = (tsk_Sched *)lua_touserdata(L, lua_upvalueindex(1));
  tsk_Hub *h = (tsk_Hub *)lua_touserdata(L, lua_upvalueindex(2));
  Pool *P = (Pool *)lua_touserdata(L, lua_upvalueindex(3));
  int n = lua_gettop(L), ispath, r = 0;
  size_t len;
  const char *chunk;
  tsk_Msg *args;
  tsk_XWaiter *w = NULL;
  Job *j;
  luaL_checkany(L, 1);
  tsk_thread_chunk(L, 1, &ispath);
  args = tsk_copy_encode(L, 2, n - 1, 0, "arg");
  chunk = lua_tolstring(L, -1, &len);
  if (!tsk_xcanblock(L, S)) {
    tsk_msg_free(args);
    tsk_checkblock(L, S);  /* raises */
  }
  j = (Job *)calloc(1, sizeof *j);
  if (j == NULL || (j->chunk = memdup(chunk, len)) == NULL) {
    free(j);
    tsk_msg_free(args);
    return luaL_error(L, "not enough memory");
  }
  j->pool = P;
  j->chunklen = len;
  j->ispath = ispath;
  j->args = args;
  pool_reap(P, 0);
  uv_mutex_lock(&P->mu);
  if (P->nidle == 0 && P->nworkers < P->size) r = startworker(L, P);
  if ((r != 0 && P->nworkers == 0) ||
      (w = tsk_xwait_new(h, S, &work_ops, j)) == NULL) {
    uv_mutex_unlock(&P->mu);
    job_free(j);
    return luaL_error(L, "cannot start a worker: %s", uv_strerror(r ? r : UV_ENOMEM));
  }
  j->w = w;
  j->state = JQUEUED;
  if (P->tail) P->tail->next = j;
  else P->head = j;
  P->tail = j;
  uv_cond_signal(&P->cv);
  uv_mutex_unlock(&P->mu);
  lua_settop(L, 0);
  return tsk_xwait_block(L, w, -1, TSK_ON_WORK, 0, workk);
}

/* ts.thread.pool([n]): the pool's size, before setting it to n */
static int thread_pool(lua_State *L) {
  Pool *P = (Pool *)lua_touserdata(L, lua_upvalueindex(3));
  int old;
  if (!lua_isnoneornil(L, 1)) {
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 1 && n <= 1024, 1, "pool size must be in 1..1024");
    uv_mutex_lock(&P->mu);
    old = P->size;
    P->size = (int)n;
    uv_cond_broadcast(&P->cv);  /* extra idle workers leave */
    uv_mutex_unlock(&P->mu);
    pool_reap(P, 0);
  }
  else {
    uv_mutex_lock(&P->mu);
    old = P->size;
    uv_mutex_unlock(&P->mu);
  }
  lua_pushinteger(L, old);
  return 1;
}

static int pool_gc(lua_State *L) {
  Pool **box = (Pool **)lua_touserdata(L, 1), *P = *box;
  Job *j;
  if (P == NULL) return 0;
  *box = NULL;
  uv_mutex_lock(&P->mu);
  P->stopping = 1;
  while ((j = P->head) != NULL) {  /* never started: their callers are gone */
    P->head = j->next;
    j->state = JDONE;
    if (j->w == NULL) job_free(j);
    else {
      j->w->state = TSK_XCLOSED;
      tsk_xwait_complete(j->w);
    }
  }
  P->tail = NULL;
  uv_cond_broadcast(&P->cv);
  uv_mutex_unlock(&P->mu);
  pool_reap(P, 1);  /* running jobs finish first */
  uv_cond_destroy(&P->cv);
  uv_mutex_destroy(&P->mu);
  free(P);
  return 0;
}

static Pool *pool_new(lua_State *L) {
  Pool **box = (Pool **)lua_newuserdatauv(L, sizeof *box, 0);
  Pool *P;
  unsigned int cores = uv_available_parallelism();
  *box = NULL;
  P = (Pool *)calloc(1, sizeof *P);
  if (P == NULL) luaL_error(L, "not enough memory");
  if (uv_mutex_init(&P->mu) != 0) {
    free(P);
    luaL_error(L, "cannot create a mutex");
  }
  if (uv_cond_init(&P->cv) != 0) {
    uv_mutex_destroy(&P->mu);
    free(P);
    luaL_error(L, "cannot create a condition variable");
  }
  P->size = cores > 4 ? (int)cores : 4;
  *box = P;
  lua_newtable(L);
  lua_pushcfunction(L, pool_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, POOL_KEY);
  return P;
}

void tsk_thread_open(lua_State *L) {
  static const luaL_Reg meths[] = {
    {"join", meth_join},
    {"done", meth_done},
    {NULL, NULL}
  };
  tsk_Sched *S = tsk_sched(L);
  tsk_Hub *h = tsk_hub(L);
  ThreadList *tl;
  Pool *P;
  /* the list first: at close it is collected after the handles, and it
     waits for the threads */
  tl = (ThreadList *)lua_newuserdatauv(L, sizeof *tl, 0);
  tl->head = NULL;
  lua_newtable(L);
  lua_pushcfunction(L, threads_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, THREADS_KEY);
  P = pool_new(L);
  tsk_xclass_new(L, THREAD_MT, meth_tostring, meth_gc, meths, S, h);
  lua_newtable(L);  /* ts.thread */
  lua_pushlightuserdata(L, S);
  lua_pushlightuserdata(L, h);
  lua_pushlightuserdata(L, tl);
  lua_pushcclosure(L, thread_start, 3);
  lua_setfield(L, -2, "start");
  lua_pushlightuserdata(L, S);
  lua_pushlightuserdata(L, h);
  lua_pushlightuserdata(L, P);
  lua_pushcclosure(L, thread_pool, 3);
  lua_setfield(L, -2, "pool");
  lua_setfield(L, -2, "thread");
  lua_pushlightuserdata(L, S);
  lua_pushlightuserdata(L, h);
  lua_pushlightuserdata(L, P);
  lua_pushcclosure(L, global_work, 3);
  lua_setfield(L, -2, "work");
}
