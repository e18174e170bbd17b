/*
** unixdgram.c: LuaSocket's Unix datagram sockets (socket.unix.dgram, alias
** unix.udp), classes unixdgram{unconnected} and unixdgram{connected}
** (group unixdgram{any}), as Debian's LuaSocket 3.1.0 has them.
**
** libuv has no handle for AF_UNIX datagrams, so the object owns a
** non-blocking socket(AF_UNIX, SOCK_DGRAM) and a uv_poll_t on it, in one
** malloc'd block (Ud) that the poll handle's close callback frees. Every
** call tries its syscall first; only when it would block does the calling
** tasklet link itself into the socket's FIFO of readers or writers, and
** the poll handle watches the directions somebody waits for (and nothing,
** unref'd, otherwise). The poll callback wakes the first waiter of a
** direction, which tries its syscall again. Nothing is read ahead: the
** kernel keeps the datagrams, as for LuaSocket.
**
** A closed socket (close, or a failed bind/connect, which LuaSocket also
** closes) has no Ud; calls then answer as LuaSocket's on SOCKET_INVALID.
*/
#define _GNU_SOURCE

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "socket.h"

#define DATAGRAMSIZE 8192          /* LuaSocket's default receive size */
#define MAXRECV      (4u << 20)    /* a buffer for one receive is at most this */
#define NAP          0.002         /* sendto's retry interval on a full receiver */

#define CONNECTED   "unixdgram{connected}"
#define UNCONNECTED "unixdgram{unconnected}"
#define ANY         "unixdgram{any}"

typedef struct Ud {
  uv_poll_t h;            /* first: the block is freed by the close callback */
  tsk_Sched *S;
  int fd;
  int events;             /* what the poll handle watches now */
  tsk_Queue readers, writers;  /* tasklets waiting, FIFO */
  tsk_Queue nappers;      /* sendto's waiting for a full receiver (below) */
  tsk_Watch *rwatch, *wwatch;  /* selects waiting (socket.h) */
} Ud;

typedef struct Obj {
  Ud *u;                  /* NULL once closed */
  tsk_Timeout tm;
} Obj;

/* --- errors --------------------------------------------------------- */

/* LuaSocket's socket_strerror for an errno value. */
static const char *errstr(int e) {
  switch (e) {
    case EADDRINUSE: return "address already in use";
    case EISCONN: return "already connected";
    case EACCES: return "permission denied";
    case ECONNREFUSED: return "connection refused";
    case ECONNABORTED: case ECONNRESET: return "closed";
    case ETIMEDOUT: return "timeout";
    default: return strerror(e);
  }
}

static int failerrno(lua_State *L, int e) {
  return tsk_fail(L, errstr(e));
}

/* --- the poll handle ------------------------------------------------ */

static void poll_cb(uv_poll_t *h, int status, int events);

/* Watch the directions somebody waits for. Returns 0 or a uv code. */
static int update(Ud *u) {
  int ev = 0, e = 0;
  if (uv_is_closing((uv_handle_t *)&u->h)) return UV_EBADF;
  if (u->readers.head != NULL || u->rwatch != NULL) ev |= UV_READABLE;
  if (u->writers.head != NULL || u->wwatch != NULL) ev |= UV_WRITABLE;
  if (ev == u->events) return 0;
  if (ev != 0) e = uv_poll_start(&u->h, ev, poll_cb);
  else uv_poll_stop(&u->h);
  if (e != 0) {
    uv_poll_stop(&u->h);
    ev = 0;
  }
  u->events = ev;
  tsk_handle_waiting((uv_handle_t *)&u->h, ev != 0);
  return e;
}

static void poll_cb(uv_poll_t *h, int status, int events) {
  Ud *u = (Ud *)h->data;
  if (status < 0) events = UV_READABLE | UV_WRITABLE;  /* let them see the error */
  if ((events & UV_READABLE) && u->readers.head != NULL)
    tsk_wake(u->readers.head, TSK_WOK, NULL, 0);
  if ((events & UV_WRITABLE) && u->writers.head != NULL)
    tsk_wake(u->writers.head, TSK_WOK, NULL, 0);
  if (events & UV_READABLE) tsk_watch_fire(u->rwatch);
  if (events & UV_WRITABLE) tsk_watch_fire(u->wwatch);
  update(u);
}

/* A block for the socket fd (made non-blocking). Returns NULL and sets
** *err on failure (fd is left open). */
static Ud *newud(tsk_Sched *S, int fd, int *err) {
  Ud *u = (Ud *)calloc(1, sizeof *u);
  if (u == NULL) {
    *err = UV_ENOMEM;
    return NULL;
  }
  *err = uv_poll_init(S->loop, &u->h, fd);
  if (*err != 0) {
    free(u);
    return NULL;
  }
  u->S = S;
  u->fd = fd;
  u->h.data = u;
  tsk_handle_opened(S, (uv_handle_t *)&u->h);
  return u;
}

/* Let go of the socket: its waiters get "closed"; the descriptor is
** closed too unless keepfd. */
static void release(Obj *o, int keepfd) {
  Ud *u = o->u;
  if (u == NULL) return;
  o->u = NULL;
  tsk_queue_wakeall(&u->readers, TSK_WCLOSED);
  tsk_queue_wakeall(&u->writers, TSK_WCLOSED);
  tsk_queue_wakeall(&u->nappers, TSK_WCLOSED);
  tsk_watch_closeall(&u->rwatch);
  tsk_watch_closeall(&u->wwatch);
  tsk_handle_close(u->S, (uv_handle_t *)&u->h, NULL);  /* stops polling now */
  if (!keepfd) close(u->fd);
}

static void closesocket(Obj *o) { release(o, 0); }

/* wcancel: a reader or writer timed out or was killed (already unlinked). */
static void waitcancel(tsk_Tasklet *t) {
  update((Ud *)t->wobj);
}

/* Link t into q and wait (the call's retry is k). */
static int waitfor(lua_State *L, Obj *o, tsk_Queue *q, double left,
                   lua_KContext ctx, lua_KFunction k) {
  tsk_Sched *S = tsk_upsched(L);
  tsk_Tasklet *t = tsk_self(S);
  Ud *u = o->u;
  int e;
  tsk_checkblock(L, S);
  tsk_queue_push(q, t);
  if ((e = update(u)) != 0) {
    tsk_queue_remove(t);
    return tsk_sock_fail(L, e);
  }
  t->won = TSK_ON_SOCKET;
  t->wobj = u;
  t->wcancel = waitcancel;
  return tsk_wait(L, t, left, ctx, k);
}

/* Why a wait ended, when not because the socket may be ready. */
static int waitfailed(lua_State *L) {
  tsk_Tasklet *t = tsk_self(tsk_upsched(L));
  if (t->wresult == TSK_WOK) return 0;
  return tsk_sock_fail(L, t->wresult);  /* "timeout", "closed" */
}

/* --- addresses ------------------------------------------------------ */

/* Fill *sa from path; 0, or -1 when it is too long (LuaSocket's limit). */
static int makeaddr(const char *path, struct sockaddr_un *sa) {
  size_t len = strlen(path);
  if (len >= sizeof sa->sun_path) return -1;
  memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  memcpy(sa->sun_path, path, len);
  return 0;
}

/* Push the path of sa (len bytes of it valid), "" when unnamed. */
static void pushpath(lua_State *L, const struct sockaddr_un *sa, socklen_t len) {
  size_t max = len > offsetof(struct sockaddr_un, sun_path)
             ? len - offsetof(struct sockaddr_un, sun_path) : 0;
  if (max > sizeof sa->sun_path) max = sizeof sa->sun_path;
  lua_pushlstring(L, sa->sun_path, strnlen(sa->sun_path, max));
}

/* --- receiving ------------------------------------------------------ */

/* The size argument as LuaSocket reads it: 0 when it cannot be
** allocated (negative, NaN). */
static int getsize(lua_State *L, size_t *size) {
  lua_Number n = luaL_optnumber(L, 2, DATAGRAMSIZE);
  if (n < 0 || n != n) return 0;
  *size = n >= 18446744073709551616.0 ? 0 : (size_t)n;
  if (*size > MAXRECV) *size = MAXRECV;
  return 1;
}

/* ctx of a receive: the size, and whether it is receivefrom. */
#define RCTX(size, from) ((lua_KContext)(((size) << 1) | (size_t)(from)))

static int receivek(lua_State *L, int status, lua_KContext ctx);

static int doreceive(lua_State *L, Obj *o, size_t want, int from, int first) {
  char stackbuf[DATAGRAMSIZE];
  char *buf = stackbuf;
  struct sockaddr_un sa;
  socklen_t salen = sizeof sa;
  ssize_t n;
  double left;
  if (o->u == NULL) {  /* LuaSocket: a closed socket gives an empty datagram */
    lua_pushliteral(L, "");
    if (from) lua_pushliteral(L, "");
    return from ? 2 : 1;
  }
  if (!first || o->u->readers.head == NULL) {  /* nobody before us */
    if (want > sizeof stackbuf && (buf = (char *)malloc(want)) == NULL)
      return tsk_fail(L, "out of memory");
    sa.sun_path[0] = '\0';
    do n = recvfrom(o->u->fd, buf, want, 0, (struct sockaddr *)&sa, &salen);
    while (n < 0 && errno == EINTR);
    if (n >= 0) {
      o->u->S->bytesin += (uint64_t)n;
      lua_pushlstring(L, buf, (size_t)n);
      if (from) pushpath(L, &sa, salen);
    }
    else if (errno != EAGAIN && errno != EWOULDBLOCK) {
      int e = errno;
      if (buf != stackbuf) free(buf);
      return failerrno(L, e);
    }
    if (buf != stackbuf) free(buf);
    if (n >= 0) return from ? 2 : 1;
  }
  left = tsk_timeout_left(&o->tm);
  if (left == 0) return tsk_fail(L, "timeout");
  return waitfor(L, o, &o->u->readers, left, RCTX(want, from), receivek);
}

static int receivek(lua_State *L, int status, lua_KContext ctx) {
  size_t c = (size_t)ctx;
  Obj *o = (Obj *)lua_touserdata(L, 1);
  (void)status;
  if (waitfailed(L)) return 2;
  if (o->u == NULL) return tsk_fail(L, "closed");  /* closed as the wait ended */
  return doreceive(L, o, c >> 1, (int)(c & 1), 0);
}

/* unixdgram:receive([size]): datagram | nil, err */
static int meth_receive(lua_State *L) {
  Obj *o = (Obj *)tsk_class_checkgroup(L, ANY, 1);
  size_t size;
  if (!getsize(L, &size)) return tsk_fail(L, "out of memory");
  lua_settop(L, 1);
  tsk_timeout_markstart(&o->tm);
  return doreceive(L, o, size, 0, 1);
}

/* unixdgram:receivefrom([size]): datagram, path | nil, err */
static int meth_receivefrom(lua_State *L) {
  Obj *o = (Obj *)tsk_class_check(L, UNCONNECTED, 1);
  size_t size;
  if (!getsize(L, &size)) return tsk_fail(L, "out of memory");
  lua_settop(L, 1);
  tsk_timeout_markstart(&o->tm);
  return doreceive(L, o, size, 1, 1);
}

/* --- sending -------------------------------------------------------- */

static int sendk(lua_State *L, int status, lua_KContext ctx);

/*
** sendto on a receiver whose queue is full fails with EAGAIN while the
** sender's own socket polls writable (Linux ties writability to the peer
** only for connected sockets): polling would spin, as LuaSocket's
** socket_waitfd does. So such a sendto naps (NAP seconds, in
** u->nappers, where close finds it) and tries again, until its timeout,
** whose block part bounds the whole wait since the first EAGAIN (kept at
** stack index 4).
*/
static int nap(lua_State *L, Obj *o, int first) {
  tsk_Sched *S = tsk_upsched(L);
  tsk_Tasklet *t;
  double left = tsk_timeout_left(&o->tm), since;
  if (left == 0) return tsk_fail(L, "timeout");
  if (first) {
    lua_settop(L, 3);
    lua_pushnumber(L, tsk_now());
  }
  since = lua_tonumber(L, 4);
  if (o->tm.block >= 0) {
    double b = o->tm.block - (tsk_now() - since);
    if (b <= 0) return tsk_fail(L, "timeout");
    if (left < 0 || b < left) left = b;
  }
  t = tsk_self(S);
  tsk_checkblock(L, S);
  tsk_queue_push(&o->u->nappers, t);
  t->won = TSK_ON_SOCKET;
  t->wobj = o->u;
  t->wcancel = NULL;
  return tsk_wait(L, t, left < 0 || left > NAP ? NAP : left, 1, sendk);
}

/* The data is at 2; for sendto (to) the path at 3. */
static int dosend(lua_State *L, Obj *o, int to, int first) {
  size_t len;
  const char *data = lua_tolstring(L, 2, &len);
  struct sockaddr_un sa;
  socklen_t salen = 0;
  ssize_t n;
  double left;
  if (o->u == NULL) return tsk_fail(L, "refused");
  if (to) {
    const char *path = lua_tostring(L, 3);
    makeaddr(path, &sa);  /* (checked by the caller) */
    salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
  }
  if (!first || o->u->writers.head == NULL) {
    for (;;) {
      n = to ? sendto(o->u->fd, data, len, MSG_NOSIGNAL, (struct sockaddr *)&sa, salen)
             : send(o->u->fd, data, len, MSG_NOSIGNAL);
      if (n >= 0) {
        o->u->S->bytesout += (uint64_t)n;
        lua_pushnumber(L, (lua_Number)n);
        return 1;
      }
      if (errno == EINTR) continue;  /* (LuaSocket also retries EPROTOTYPE: forever) */
      if (errno == EPIPE) return tsk_fail(L, "refused");
      if (errno != EAGAIN && errno != EWOULDBLOCK) return failerrno(L, errno);
      break;
    }
  }
  if (to) return nap(L, o, first);
  left = tsk_timeout_left(&o->tm);
  if (left == 0) return tsk_fail(L, "timeout");
  return waitfor(L, o, &o->u->writers, left, 0, sendk);
}

static int sendk(lua_State *L, int status, lua_KContext ctx) {
  tsk_Tasklet *t = tsk_self(tsk_upsched(L));
  Obj *o = (Obj *)lua_touserdata(L, 1);
  (void)status;
  if (!(ctx == 1 && t->wresult == TSK_WTIMEOUT) && waitfailed(L)) return 2;
  if (o->u == NULL) return tsk_fail(L, "closed");  /* closed as the wait ended */
  return dosend(L, o, (int)ctx, 0);
}

/* unixdgram:send(datagram): bytes | nil, err */
static int meth_send(lua_State *L) {
  Obj *o = (Obj *)tsk_class_check(L, CONNECTED, 1);
  luaL_checkstring(L, 2);
  lua_settop(L, 2);
  tsk_timeout_markstart(&o->tm);
  return dosend(L, o, 0, 1);
}

/* unixdgram:sendto(datagram, path): bytes | nil, err */
static int meth_sendto(lua_State *L) {
  Obj *o = (Obj *)tsk_class_check(L, UNCONNECTED, 1);
  struct sockaddr_un sa;
  luaL_checkstring(L, 2);
  if (makeaddr(luaL_checkstring(L, 3), &sa) != 0) return tsk_fail(L, "path too long");
  lua_settop(L, 3);
  tsk_timeout_markstart(&o->tm);
  return dosend(L, o, 1, 1);
}

/* --- naming --------------------------------------------------------- */

/* unixdgram:bind(path) (alias setsockname): 1 | nil, err. A failed bind
** closes the socket, as LuaSocket's does. */
static int meth_bind(lua_State *L) {
  Obj *o = (Obj *)tsk_class_check(L, UNCONNECTED, 1);
  struct sockaddr_un sa;
  int fd = o->u != NULL ? o->u->fd : -1;
  if (makeaddr(luaL_checkstring(L, 2), &sa) != 0) return tsk_fail(L, "path too long");
  if (bind(fd, (struct sockaddr *)&sa, (socklen_t)SUN_LEN(&sa)) != 0) {
    int e = errno;
    closesocket(o);
    return failerrno(L, e);
  }
  lua_pushnumber(L, 1);
  return 1;
}

/* unixdgram:connect(path) (alias setpeername): 1 | nil, err. Makes it
** unixdgram{connected}; a failure closes the socket, as LuaSocket's. */
static int meth_connect(lua_State *L) {
  Obj *o = (Obj *)tsk_class_checkgroup(L, ANY, 1);
  struct sockaddr_un sa;
  int r;
  if (makeaddr(luaL_checkstring(L, 2), &sa) != 0) return tsk_fail(L, "path too long");
  tsk_timeout_markstart(&o->tm);
  if (o->u == NULL) return tsk_fail(L, "closed");
  do r = connect(o->u->fd, (struct sockaddr *)&sa, (socklen_t)SUN_LEN(&sa));
  while (r != 0 && errno == EINTR);
  if (r != 0) {  /* a datagram connect never is in progress */
    int e = errno;
    closesocket(o);
    return failerrno(L, e);
  }
  tsk_class_set(L, tsk_upsched(L), 1, CONNECTED);
  lua_pushnumber(L, 1);
  return 1;
}

/* unixdgram:getsockname(): path ("" when unbound) | nil, err */
static int meth_getsockname(lua_State *L) {
  Obj *o = (Obj *)tsk_class_checkgroup(L, ANY, 1);
  struct sockaddr_un sa;
  socklen_t len = sizeof sa;
  memset(&sa, 0, sizeof sa);
  if (getsockname(o->u != NULL ? o->u->fd : -1, (struct sockaddr *)&sa, &len) != 0)
    return failerrno(L, errno);
  pushpath(L, &sa, len);
  return 1;
}

/* --- the rest of the methods ---------------------------------------- */

static int meth_getfd(lua_State *L) {
  Obj *o = (Obj *)tsk_class_checkgroup(L, ANY, 1);
  lua_pushnumber(L, o->u != NULL ? o->u->fd : -1);  /* a float, as LuaSocket */
  return 1;
}

/*
** unixdgram:setfd(fd): LuaSocket just overwrites its descriptor. Here the
** current one is let go of without closing it (whoever got it with getfd
** keeps it) and fd, if >= 0, is adopted (made non-blocking); one that
** cannot be polled leaves the object closed.
*/
static int meth_setfd(lua_State *L) {
  Obj *o = (Obj *)tsk_class_checkgroup(L, ANY, 1);
  int fd = tsk_num2int(luaL_checknumber(L, 2));
  int e;
  if (o->u != NULL && o->u->fd == fd) return 0;
  release(o, 1);
  if (fd >= 0) o->u = newud(tsk_upsched(L), fd, &e);
  return 0;
}

static int meth_dirty(lua_State *L) {
  tsk_class_checkgroup(L, ANY, 1);
  lua_pushboolean(L, 0);  /* nothing is ever buffered */
  return 1;
}

static int meth_settimeout(lua_State *L) {
  Obj *o = (Obj *)tsk_class_checkgroup(L, ANY, 1);
  return tsk_timeout_meth_settimeout(L, &o->tm);
}

static int meth_gettimeout(lua_State *L) {
  Obj *o = (Obj *)tsk_class_checkgroup(L, ANY, 1);
  return tsk_timeout_meth_gettimeout(L, &o->tm);
}

static int meth_close(lua_State *L) {
  Obj *o = (Obj *)tsk_class_checkgroup(L, ANY, 1);
  closesocket(o);
  lua_pushnumber(L, 1);
  return 1;
}

static int meth_gc(lua_State *L) {
  Obj *o = (Obj *)tsk_class_testgroup(L, ANY, 1);
  if (o != NULL) closesocket(o);
  return 0;
}

/* LuaSocket's unixdgram has one option, and no getoption. */
static const tsk_Option options[] = {
  {"reuseaddr", tsk_opt_set_reuseaddr, NULL},
  {NULL, NULL, NULL}
};

static int meth_setoption(lua_State *L) {
  Obj *o = (Obj *)tsk_class_checkgroup(L, ANY, 1);
  return tsk_opt_meth_setoption(L, options, o->u != NULL ? o->u->fd : -1, o);
}

/* --- readiness for socket.select (socket.h) -------------------------- */

static int ud_ready(lua_State *L, int idx, int write) {
  Obj *o = (Obj *)lua_touserdata(L, idx);
  struct pollfd p;
  if (o->u == NULL) return 1;
  p.fd = o->u->fd;
  p.events = write ? POLLOUT : POLLIN;
  p.revents = 0;
  return poll(&p, 1, 0) != 0;  /* (an error counts as ready: the call says it) */
}

static int ud_watch(lua_State *L, int idx, int write, tsk_Watch *w) {
  Obj *o = (Obj *)lua_touserdata(L, idx);
  Ud *u = o->u;
  tsk_Watch **head;
  if (u == NULL) return 1;
  head = write ? &u->wwatch : &u->rwatch;
  tsk_watch_link(head, w, u);
  if (update(u) != 0) {
    tsk_watch_unlink(w);
    update(u);
    return 1;
  }
  return 0;
}

static void ud_unwatch(tsk_Watch *w) {
  int linked = w->pprev != NULL;  /* (not after the socket closed) */
  tsk_watch_unlink(w);
  if (linked) update((Ud *)w->obj);
}

static const tsk_Ready ud_readiness = {ud_ready, ud_watch, ud_unwatch};

/* --- constructor ---------------------------------------------------- */

/* unix.dgram(): unixdgram{unconnected} | nil, err */
static int global_dgram(lua_State *L) {
  tsk_Sched *S = tsk_upsched(L);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int e;
  Obj *o;
  if (fd < 0) return failerrno(L, errno);
  o = (Obj *)lua_newuserdatauv(L, sizeof *o, 0);
  o->u = NULL;
  tsk_timeout_init(&o->tm, -1, -1);
  tsk_class_set(L, tsk_upsched(L), -1, UNCONNECTED);
  if ((o->u = newud(S, fd, &e)) == NULL) {
    close(fd);
    return tsk_sock_fail(L, e);
  }
  return 1;
}

void tsk_unixdgram_open(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"__gc", meth_gc},
    {"__close", meth_gc},
    {"bind", meth_bind},
    {"close", meth_close},
    {"connect", meth_connect},
    {"dirty", meth_dirty},
    {"getfd", meth_getfd},
    {"getsockname", meth_getsockname},
    {"gettimeout", meth_gettimeout},
    {"receive", meth_receive},
    {"receivefrom", meth_receivefrom},
    {"send", meth_send},
    {"sendto", meth_sendto},
    {"setfd", meth_setfd},
    {"setoption", meth_setoption},
    {"setpeername", meth_connect},
    {"setsockname", meth_bind},
    {"settimeout", meth_settimeout},
    {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"dgram", global_dgram},
    {NULL, NULL}
  };
  tsk_Sched *S = tsk_sched(L);
  tsk_class_new(L, S, CONNECTED, methods);
  tsk_class_new(L, S, UNCONNECTED, methods);
  tsk_class_group(L, CONNECTED, ANY);
  tsk_class_group(L, UNCONNECTED, ANY);
  tsk_class_group(L, CONNECTED, "select{able}");
  tsk_class_group(L, UNCONNECTED, "select{able}");
  tsk_class_ready(L, CONNECTED, &ud_readiness);
  tsk_class_ready(L, UNCONNECTED, &ud_readiness);
  if (lua_getfield(L, -1, "_unix") != LUA_TTABLE) {  /* (tsk_unix_open makes it) */
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "_unix");
  }
  tsk_setfuncs(L, S, funcs);
  lua_pop(L, 1);
}
