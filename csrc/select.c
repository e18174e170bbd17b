/*
** select.c: socket.select(recvt, sendt[, timeout]) with LuaSocket's
** results, waiting in one tasklet on any number of objects (no FD_SETSIZE).
**
** An object counts when its getfd gives a descriptor >= 0 (closed objects
** give -1 and are ignored, as in LuaSocket). Our own sockets (and the
** sink/source wrappers of socket.lua, whose metatable names their socket)
** are asked through their kind's tsk_Ready (socket.h): their descriptors
** already belong to libuv, which allows one watcher per descriptor.
** Any other descriptor (a LuaSocket socket, a pipe, a file) is checked
** with poll(2) and waited for with a uv_poll_t of its own, unless it turns
** out to be the descriptor of one of the loop's handles: then it is
** checked again every SLICE seconds instead, and when that handle is one
** of our stream sockets (an object wrapping it, found by its getfd), what
** the socket read ahead counts as readable, as the kernel's would.
**
** The wait: check everything; if nothing is ready (and no object in recvt
** is dirty), link one watcher per object, wait once, unlink them all and
** check again, until something is ready or the timeout has passed. A
** timeout of 0 still turns the loop once, so that a script polling with
** select(..., 0) lets the sockets make progress.
**
** Results as LuaSocket builds them: each table holds obj at i and i at
** obj; the dirty objects of recvt come first, in recvt's order, then the
** ready ones in the order of their descriptors; a descriptor listed twice
** stands for the last object listed with it. Nothing ready: {}, {},
** "timeout".
*/
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "socket.h"
#include "poller.h"

#define SLICE 0.005           /* re-check period for what cannot be watched */
#define SELMT "tasksock.select"
#define SOCKKEY "tasksock.socket"  /* a wrapper's metatable names its socket */

typedef struct Entry {
  tsk_Watch w;                /* ours: linked while waiting */
  uv_poll_t *poll;            /* foreign: polled while waiting, or NULL */
  const tsk_Ready *kind;      /* ours: its kind; NULL: foreign */
  int fd;
  unsigned char write;        /* the direction: 0 read, 1 write */
  unsigned char ready;
  unsigned char unsafe;       /* foreign but a handle of the loop has its fd */
  unsigned char stream;       /* ... and it is one of our stream sockets */
} Entry;

typedef struct Sel {
  tsk_Sched *S;
  tsk_Tasklet *t;             /* the waiter while linked */
  double deadline;            /* tsk_now() seconds; < 0 forever */
  int n, slice;
  Entry e[1];
} Sel;

/* Stack slots of a select call. */
enum { RECVT = 1, SENDT, TMO, ITAB, OTAB, RSET, WSET, DLIST, SEL };

/* --- collecting ------------------------------------------------------ */

/* [-0, +0] The descriptor of the object on top, by its getfd (LuaSocket's
** rule: a number >= 0, anything else means none). */
static int getfd(lua_State *L) {
  int fd = -1;
  lua_pushliteral(L, "getfd");
  lua_gettable(L, -2);
  if (!lua_isnil(L, -1)) {
    lua_pushvalue(L, -2);
    lua_call(L, 1, 1);
    if (lua_isnumber(L, -1)) {
      lua_Number n = lua_tonumber(L, -1);
      fd = n >= 0 && n < 2147483647.0 ? (int)n : -1;
    }
  }
  lua_pop(L, 1);
  return fd;
}

static int isdirty(lua_State *L) {
  int is = 0;
  lua_pushliteral(L, "dirty");
  lua_gettable(L, -2);
  if (!lua_isnil(L, -1)) {
    lua_pushvalue(L, -2);
    lua_call(L, 1, 1);
    is = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  return is;
}

/* [-0, +0] If the object on top is ours (or wraps one of ours), record it
** as otab[fd]. */
static void noteours(lua_State *L, int fd) {
  if (tsk_ready_of(L, -1) != NULL) {
    lua_pushvalue(L, -1);
    lua_rawseti(L, OTAB, fd);
  }
  else if (lua_getmetatable(L, -1)) {
    if (lua_getfield(L, -1, SOCKKEY) == LUA_TUSERDATA && tsk_ready_of(L, -1) != NULL)
      lua_rawseti(L, OTAB, fd);
    else
      lua_pop(L, 1);
    lua_pop(L, 1);
  }
}

/* Collect the objects of the table at tab into itab (fd -> object) and
** set (fd -> true); returns how many distinct descriptors it added. */
static int collect(lua_State *L, int tab, int set) {
  int i, n = 0;
  if (lua_isnil(L, tab)) return 0;
  luaL_checktype(L, tab, LUA_TTABLE);
  for (i = 1; ; i++) {
    int fd;
    lua_pushinteger(L, i);
    if (lua_gettable(L, tab) == LUA_TNIL) {
      lua_pop(L, 1);
      break;
    }
    fd = getfd(L);
    if (fd >= 0) {
      lua_pushvalue(L, -1);
      lua_rawseti(L, ITAB, fd);
      noteours(L, fd);
      if (lua_rawgeti(L, set, fd) == LUA_TNIL) n++;
      lua_pop(L, 1);
      lua_pushboolean(L, 1);
      lua_rawseti(L, set, fd);
    }
    lua_pop(L, 1);
  }
  return n;
}

/* The dirty objects of recvt go to dlist (in order) and leave rset.
** Returns how many. */
static int checkdirty(lua_State *L) {
  int i, n = 0;
  if (lua_isnil(L, RECVT)) return 0;
  for (i = 1; ; i++) {
    int fd;
    lua_pushinteger(L, i);
    if (lua_gettable(L, RECVT) == LUA_TNIL) {
      lua_pop(L, 1);
      break;
    }
    fd = getfd(L);
    if (fd >= 0 && isdirty(L)) {
      lua_pushvalue(L, -1);
      lua_rawseti(L, DLIST, ++n);
      lua_pushnil(L);
      lua_rawseti(L, RSET, fd);
    }
    lua_pop(L, 1);
  }
  return n;
}

static int entrycmp(const void *a, const void *b) {
  const Entry *x = (const Entry *)a, *y = (const Entry *)b;
  if (x->fd != y->fd) return x->fd < y->fd ? -1 : 1;
  return (int)x->write - (int)y->write;
}

/* --- checking -------------------------------------------------------- */

static int pollnow(int fd, int write) {
  struct pollfd p;
  int r;
  p.fd = fd;
  p.events = write ? POLLOUT : POLLIN;
  p.revents = 0;
  do r = poll(&p, 1, 0); while (r < 0 && errno == EINTR);
  if (r <= 0) return 0;
  if (p.revents & POLLNVAL) return -1;
  return (p.revents & (write ? (POLLOUT | POLLERR)
                             : (POLLIN | POLLHUP | POLLERR))) != 0;
}

/* The index of the first entry of fd (they are sorted), or sel->n. */
static int findfd(Sel *sel, int fd) {
  int lo = 0, hi = sel->n;
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    if (sel->e[mid].fd < fd) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/* Mark the foreign entries whose descriptor one of the loop's handles has:
** libuv lets no second poll watch it. */
static void walk_cb(uv_handle_t *h, void *arg) {
  Sel *sel = (Sel *)arg;
  uv_os_fd_t fd;
  int i;
  if (uv_is_closing(h) || uv_fileno(h, &fd) != 0) return;
  for (i = findfd(sel, (int)fd); i < sel->n && sel->e[i].fd == (int)fd; i++)
    if (sel->e[i].kind == NULL) sel->e[i].unsafe = 1;
}

/* Mark the foreign entries for reading whose descriptor is one of our
** stream sockets' (an object wrapping it that we did not recognize) when
** that socket holds bytes read ahead. */
static void walk_io(tsk_Io *io, void *arg) {
  Sel *sel = (Sel *)arg;
  int i;
  for (i = findfd(sel, io->fd); i < sel->n && sel->e[i].fd == io->fd; i++) {
    Entry *e = &sel->e[i];
    if (e->kind == NULL && !e->write && tsk_stream_readahead(io)) e->stream = 1;
  }
}

/* Walk the loop's handles and our sockets for the foreign entries (none:
** no walk). */
static void walk(Sel *sel) {
  int i, foreign = 0;
  for (i = 0; i < sel->n; i++) {
    foreign |= sel->e[i].kind == NULL;
    sel->e[i].unsafe = sel->e[i].stream = 0;
  }
  if (foreign) {
    uv_walk(sel->S->loop, walk_cb, sel);
    tsk_poller_walk(sel->S, walk_io, sel);
  }
}

/* Mark what is ready now; returns how many are. A foreign object holding
** one of our stream sockets' descriptor is readable when that socket has
** read ahead what LuaSocket would have left in the kernel. */
static int check(lua_State *L, Sel *sel) {
  int i, n = 0;
  walk(sel);
  for (i = 0; i < sel->n; i++) {
    Entry *e = &sel->e[i];
    if (e->kind != NULL) {
      lua_rawgeti(L, OTAB, e->fd);
      e->ready = (unsigned char)(e->kind->ready(L, lua_gettop(L), e->write) != 0);
      lua_pop(L, 1);
    }
    else {
      int r = pollnow(e->fd, e->write);
      if (r < 0) luaL_error(L, "select failed");  /* LuaSocket: EBADF */
      e->ready = (unsigned char)(r || e->stream);
    }
    n += e->ready;
  }
  return n;
}

/* --- waiting --------------------------------------------------------- */

static void poll_cb(uv_poll_t *p, int status, int events) {
  Sel *sel = (Sel *)p->data;
  (void)status; (void)events;
  if (sel != NULL && sel->t != NULL) tsk_wake(sel->t, TSK_WOK, NULL, 0);
}

static void pollclose_cb(uv_handle_t *h) { free(h); }

/* Unlink every watcher and close every poll (idempotent). */
static void unwatch(Sel *sel) {
  int i;
  for (i = 0; i < sel->n; i++) {
    Entry *e = &sel->e[i];
    if (e->w.pprev != NULL) e->kind->unwatch(&e->w);
    e->w.t = NULL;
    if (e->poll != NULL) {
      e->poll->data = NULL;
      uv_close((uv_handle_t *)e->poll, pollclose_cb);
      e->poll = NULL;
    }
  }
  sel->t = NULL;
}

static void sel_cancel(tsk_Tasklet *t) { unwatch((Sel *)t->wobj); }

static int sel_gc(lua_State *L) {
  Sel *sel = (Sel *)lua_touserdata(L, 1);
  unwatch(sel);
  return 0;
}

/* Start a poll for the foreign entry e (and for its write twin e + 1 on
** the same descriptor). Returns 0, or 1 if it cannot be watched. */
static int startpoll(Sel *sel, Entry *e, int both) {
  uv_poll_t *p;
  int flags, r;
  if (e->unsafe || (p = (uv_poll_t *)malloc(sizeof *p)) == NULL) return 1;
  flags = fcntl(e->fd, F_GETFL);
  r = uv_poll_init(sel->S->loop, p, e->fd);
  if (r != 0) {
    free(p);
    return 1;
  }
  if (flags >= 0) fcntl(e->fd, F_SETFL, flags);  /* libuv made it non-blocking */
  p->data = sel;
  e->poll = p;
  r = uv_poll_start(p, both ? UV_READABLE | UV_WRITABLE
                            : e->write ? UV_WRITABLE : UV_READABLE, poll_cb);
  return r != 0;
}

/* Link a watcher for every entry; sets sel->slice when some cannot be. */
static void watch(lua_State *L, Sel *sel, tsk_Tasklet *t) {
  int i;
  sel->t = t;
  sel->slice = 0;  /* (check walked the handles: e->unsafe is set) */
  for (i = 0; i < sel->n; i++) {
    Entry *e = &sel->e[i];
    e->w.t = t;
    if (e->kind != NULL) {
      lua_rawgeti(L, OTAB, e->fd);
      if (e->kind->watch(L, lua_gettop(L), e->write, &e->w) != 0) sel->slice = 1;
      lua_pop(L, 1);
    }
    else {
      int both = i + 1 < sel->n && sel->e[i + 1].fd == e->fd && sel->e[i + 1].kind == NULL;
      if (startpoll(sel, e, both) != 0) sel->slice = 1;
      if (both) i++;
    }
  }
}

/* --- results --------------------------------------------------------- */

/* [-0, +1] obj at i and i at obj, as LuaSocket's make_assoc. */
static void add(lua_State *L, int tab, int *i) {
  ++*i;
  lua_pushvalue(L, -1);
  lua_rawseti(L, tab, *i);
  lua_pushnumber(L, (lua_Number)*i);  /* LuaSocket's value is a float */
  lua_rawset(L, tab);
}

static int results(lua_State *L, Sel *sel, int ndirty) {
  int dir, i, k;
  for (dir = 0; dir < 2; dir++) {
    int tab;
    lua_newtable(L);
    tab = lua_gettop(L);
    k = 0;
    if (dir == 0)
      for (i = 1; i <= ndirty; i++) {
        lua_rawgeti(L, DLIST, i);
        add(L, tab, &k);
      }
    for (i = 0; i < sel->n; i++) {
      Entry *e = &sel->e[i];
      if (e->write != dir || !e->ready) continue;
      lua_rawgeti(L, ITAB, e->fd);
      add(L, tab, &k);
    }
  }
  return 2;
}

static int timedout(lua_State *L) {
  lua_newtable(L);
  lua_newtable(L);
  lua_pushliteral(L, "timeout");
  return 3;
}

/* --- the function ---------------------------------------------------- */

static int waitfor(lua_State *L, Sel *sel);

static int selectk(lua_State *L, int status, lua_KContext ctx) {
  Sel *sel = (Sel *)lua_touserdata(L, SEL);
  (void)status; (void)ctx;
  unwatch(sel);
  lua_settop(L, SEL);
  if (check(L, sel) > 0) return results(L, sel, 0);
  if (sel->deadline >= 0 && tsk_now() >= sel->deadline) return timedout(L);
  return waitfor(L, sel);
}

static int waitfor(lua_State *L, Sel *sel) {
  tsk_Tasklet *t = tsk_self(sel->S);
  double left = -1;
  tsk_checkblock(L, sel->S);
  if (sel->deadline >= 0) {
    left = sel->deadline - tsk_now();
    if (left < 0) left = 0;
  }
  watch(L, sel, t);
  if (sel->slice && (left < 0 || left > SLICE)) left = SLICE;
  t->won = TSK_ON_SELECT;
  t->wobj = sel;
  t->wcancel = sel_cancel;
  return tsk_wait(L, t, left, 0, selectk);
}

/* socket.select(recvt, sendt[, timeout]) */
static int global_select(lua_State *L) {
  tsk_Sched *S = tsk_upsched(L);
  double t = luaL_optnumber(L, TMO, -1);
  int nr, nw, ndirty, n, i;
  Sel *sel;
  lua_settop(L, TMO);
  lua_newtable(L);  /* ITAB */
  lua_newtable(L);  /* OTAB */
  lua_newtable(L);  /* RSET */
  lua_newtable(L);  /* WSET */
  lua_newtable(L);  /* DLIST */
  nr = collect(L, RECVT, RSET);
  nw = collect(L, SENDT, WSET);
  ndirty = checkdirty(L);
  n = nr + nw;
  sel = (Sel *)lua_newuserdatauv(L, offsetof(Sel, e) + (size_t)(n ? n : 1) * sizeof(Entry), 0);
  memset(sel, 0, offsetof(Sel, e) + (size_t)(n ? n : 1) * sizeof(Entry));
  sel->S = S;
  luaL_setmetatable(L, SELMT);
  for (i = 0, n = 0; i < 2; i++) {
    lua_pushnil(L);
    while (lua_next(L, i == 0 ? RSET : WSET) != 0) {
      Entry *e = &sel->e[n++];
      lua_pop(L, 1);
      e->fd = (int)lua_tointeger(L, -1);
      e->write = (unsigned char)i;
      if (lua_rawgeti(L, OTAB, e->fd) != LUA_TNIL) e->kind = tsk_ready_of(L, -1);
      lua_pop(L, 1);
    }
  }
  sel->n = n;
  qsort(sel->e, (size_t)n, sizeof(Entry), entrycmp);
  if (t != t || t < 0) sel->deadline = -1;
  else sel->deadline = ndirty > 0 ? 0 : tsk_now() + t;
  if (check(L, sel) > 0 || ndirty > 0) return results(L, sel, ndirty);
  return waitfor(L, sel);
}

void tsk_select_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"select", global_select},
    {NULL, NULL}
  };
  tsk_Sched *S = tsk_sched(L);
  luaL_newmetatable(L, SELMT);
  lua_pushcfunction(L, sel_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  tsk_socket_setfuncs(L, S, funcs);
}
