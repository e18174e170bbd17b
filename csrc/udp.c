/*
** udp.c: LuaSocket's UDP objects, udp{unconnected} and udp{connected}
** (group udp{any}), on libuv.
**
** The userdata (Obj) holds the LuaSocket state (family, timeout) and a
** pointer to a malloc'd Udp that starts with the uv_udp_t; the Udp exists
** only while there is an OS socket (udp() makes none until it is needed,
** as LuaSocket) and is freed in the handle's close callback.
**
** Receiving: the kernel queues datagrams, as it does for LuaSocket; we do
** not read ahead. A receive first tries recvfrom() on the non-blocking
** socket; if nothing is queued it links the tasklet into the socket's FIFO
** of readers and starts uv_udp_recv_start, which libuv stops as soon as
** nobody waits. Each reader waits with its own buffer (a userdata on its
** own stack, sized for what it asked), which libuv reads the datagram into:
** recvmsg() then truncates the datagram to that size as LuaSocket's recv()
** does, and a reader that is killed leaves nothing behind. One such buffer
** is kept in the object's user value for the next receive.
**
** Sending never blocks: uv_udp_try_send; if the kernel's buffer is full, a
** copy is queued in libuv (at most MAXQUEUED of them).
*/
#define _GNU_SOURCE

#include <errno.h>
#include <poll.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <netdb.h>

#include "socket.h"
#include "dns.h"

#define DATAGRAMSIZE 8192     /* LuaSocket's default receive size */
#define MAXDGRAM     65536    /* no UDP datagram is larger */
#define MAXQUEUED    256      /* copies libuv may hold while the kernel is full */

#define CONNECTED   "udp{connected}"
#define UNCONNECTED "udp{unconnected}"
#define ANY         "udp{any}"

typedef struct Udp {
  uv_udp_t h;             /* first: the block is freed by the close callback */
  tsk_Sched *S;
  tsk_Queue readers;      /* tasklets waiting for a datagram, FIFO */
  int receiving;          /* uv_udp_recv_start is on */
  tsk_Watch *watchers;    /* selects waiting for a datagram (socket.h) */
} Udp;

typedef struct Obj {
  Udp *u;                 /* NULL while there is no OS socket */
  int family;             /* AF_UNSPEC until the socket is made */
  tsk_Timeout tm;
} Obj;

/* A reader's buffer: its datagram, who sent it, or why it failed. */
typedef struct RecvBuf {
  Udp *u;                 /* the socket it waits on (while linked) */
  size_t size;            /* bytes allocated in data */
  size_t cap;             /* bytes to read this time (at least 1) */
  size_t want;            /* bytes asked for (maybe 0): the rest is dropped */
  size_t len;             /* bytes of the datagram kept */
  int status;             /* 0 or a negative uv code */
  struct sockaddr_storage from;
  char data[1];
} RecvBuf;

typedef struct SendReq {
  uv_udp_send_t req;
  char data[1];
} SendReq;

/* --- the OS socket -------------------------------------------------- */

static int fdof(const Obj *o) {
  return o->u != NULL ? tsk_handle_fd((const uv_handle_t *)&o->u->h) : -1;
}

/* Make the OS socket of family for o (LuaSocket: udp6 sockets are
** IPv6-only). Returns 0 or a negative uv code. */
static int makesocket(lua_State *L, Obj *o, int family) {
  tsk_Sched *S = tsk_upsched(L);
  Udp *u = (Udp *)calloc(1, sizeof *u);
  int e;
  if (u == NULL) return UV_ENOMEM;
  e = uv_udp_init_ex(S->loop, &u->h, (unsigned)family);
  if (e != 0) {
    free(u);
    return e;
  }
  u->S = S;
  u->h.data = u;
  tsk_handle_opened(S, (uv_handle_t *)&u->h);
  if (family == AF_INET6) {
    int on = 1;
    setsockopt(tsk_handle_fd((uv_handle_t *)&u->h), IPPROTO_IPV6, IPV6_V6ONLY,
               &on, sizeof on);
  }
  o->u = u;
  o->family = family;
  return 0;
}

static void stopreceiving(Udp *u) {
  if (u->receiving) {
    uv_udp_recv_stop(&u->h);
    u->receiving = 0;
  }
  tsk_handle_waiting((uv_handle_t *)&u->h, 0);
}

/* Close the OS socket: its readers get "closed". */
static void closesocket(Obj *o) {
  Udp *u = o->u;
  if (u == NULL) return;
  o->u = NULL;
  tsk_queue_wakeall(&u->readers, TSK_WCLOSED);
  tsk_watch_closeall(&u->watchers);
  stopreceiving(u);
  tsk_handle_close(u->S, (uv_handle_t *)&u->h, NULL);
}

/* --- errors --------------------------------------------------------- */

/* LuaSocket's udp_strerror: a send on a dead socket is "refused". */
static int udpfail(lua_State *L, int err) {
  if (err == UV_EPIPE || err == TSK_WCLOSED) return tsk_fail(L, "refused");
  return tsk_sock_fail(L, err);
}

/* --- receiving ------------------------------------------------------ */

static int isbound(Udp *u) {
  struct sockaddr_storage ss;
  int len = (int)sizeof ss;
  if (uv_udp_getsockname(&u->h, (struct sockaddr *)&ss, &len) != 0) return 0;
  if (ss.ss_family == AF_INET) return ((struct sockaddr_in *)&ss)->sin_port != 0;
  if (ss.ss_family == AF_INET6) return ((struct sockaddr_in6 *)&ss)->sin6_port != 0;
  return 0;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  Udp *u = (Udp *)h->data;
  tsk_Tasklet *t = u->readers.head;
  (void)suggested;
  if (t == NULL) *buf = uv_buf_init(NULL, 0);  /* libuv then reads nothing */
  else {
    RecvBuf *rb = (RecvBuf *)t->wobj;
    *buf = uv_buf_init(rb->data, (unsigned)rb->cap);
  }
}

static void recv_cb(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                    const struct sockaddr *addr, unsigned flags) {
  Udp *u = (Udp *)h->data;
  tsk_Tasklet *t = u->readers.head;
  RecvBuf *rb;
  (void)flags;  /* UV_UDP_PARTIAL: truncated, as LuaSocket's recv() */
  if (nread == 0 && addr == NULL) return;  /* nothing there after all */
  if (t == NULL || nread == UV_ENOBUFS) goto done;
  rb = (RecvBuf *)t->wobj;
  if (buf->base != rb->data) goto done;
  rb->status = nread < 0 ? (int)nread : 0;
  rb->len = nread > 0 ? (size_t)nread : 0;
  if (rb->len > rb->want) rb->len = rb->want;
  if (addr != NULL)
    memcpy(&rb->from, addr, addr->sa_family == AF_INET6
                            ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
  tsk_wake(t, TSK_WOK, NULL, 0);  /* unlinks it */
done:
  tsk_watch_fire(u->watchers);  /* a datagram came (maybe left queued) */
  if (u->readers.head == NULL) stopreceiving(u);
}

/* Make sure libuv reads for the readers (not while unbound: a datagram
** cannot arrive, and libuv would bind the socket to a port). */
static void startreceiving(Udp *u) {
  if (u->readers.head == NULL) return;
  tsk_handle_waiting((uv_handle_t *)&u->h, 1);
  if (!u->receiving && isbound(u) && uv_udp_recv_start(&u->h, alloc_cb, recv_cb) == 0)
    u->receiving = 1;
}

/* wcancel: a reader timed out or was killed. */
static void readercancel(tsk_Tasklet *t) {
  RecvBuf *rb = (RecvBuf *)t->wobj;
  if (rb->u->readers.head == NULL && rb->u->watchers == NULL) stopreceiving(rb->u);
}

/* [-0, +1] Push a buffer for a datagram of up to want bytes: the one the
** object (at 1) keeps, if big enough, else a new one. */
static RecvBuf *getbuf(lua_State *L, size_t want) {
  size_t cap = want < 1 ? 1 : want;
  RecvBuf *rb = NULL;
  if (lua_getiuservalue(L, 1, 1) == LUA_TUSERDATA &&
      ((RecvBuf *)lua_touserdata(L, -1))->size >= cap) {
    rb = (RecvBuf *)lua_touserdata(L, -1);
    lua_pushnil(L);
    lua_setiuservalue(L, 1, 1);  /* it is ours now */
  }
  else {
    size_t size = cap < DATAGRAMSIZE ? DATAGRAMSIZE : cap;
    lua_pop(L, 1);
    rb = (RecvBuf *)lua_newuserdatauv(L, offsetof(RecvBuf, data) + size, 0);
    rb->size = size;
  }
  rb->cap = cap;  /* read no more than asked: the rest is discarded */
  rb->want = want;
  rb->status = 0;
  rb->len = 0;
  return rb;
}

/* Give the buffer on top back to the object at 1; pops it. */
static void putbuf(lua_State *L) {
  lua_setiuservalue(L, 1, 1);
}

/* The datagram size argument as LuaSocket reads it (a size_t cast). */
static int getsize(lua_State *L, size_t *size) {
  lua_Number n = luaL_optnumber(L, 2, DATAGRAMSIZE);
  if (n < 0 || n != n) return 0;  /* LuaSocket: a huge malloc that fails */
  *size = n >= 18446744073709551616.0 ? 0 : (size_t)n;
  if (*size > MAXDGRAM) *size = MAXDGRAM;  /* no datagram is larger */
  return 1;
}

/* Push the results of a datagram in rb (the buffer on top): data, or
** data, ip, port (from). Returns their number; pops the buffer. */
static int pushdgram(lua_State *L, RecvBuf *rb, int from) {
  char host[NI_MAXHOST], port[NI_MAXSERV];
  int e;
  if (rb->status != 0) {
    putbuf(L);
    return udpfail(L, rb->status);
  }
  rb->u->S->bytesin += rb->len;
  if (!from) {
    lua_pushlstring(L, rb->data, rb->len);
    lua_rotate(L, -2, 1);
    putbuf(L);
    return 1;
  }
  e = getnameinfo((struct sockaddr *)&rb->from,
                  rb->from.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                 : sizeof(struct sockaddr_in),
                  host, sizeof host, port, sizeof port,
                  NI_NUMERICHOST | NI_NUMERICSERV);
  if (e != 0) {
    putbuf(L);
    return tsk_fail(L, gai_strerror(e));
  }
  lua_pushlstring(L, rb->data, rb->len);
  lua_pushstring(L, host);
  lua_pushinteger(L, strtol(port, NULL, 10));
  lua_rotate(L, -4, 3);
  putbuf(L);
  return 3;
}

static int receivek(lua_State *L, int status, lua_KContext ctx) {
  Obj *o = (Obj *)lua_touserdata(L, 1);
  tsk_Tasklet *t = tsk_self(tsk_upsched(L));
  RecvBuf *rb = (RecvBuf *)lua_touserdata(L, -1);
  (void)status;
  (void)o;
  if (t->wresult != TSK_WOK) {
    putbuf(L);
    return tsk_sock_fail(L, t->wresult);  /* "timeout", "closed" */
  }
  return pushdgram(L, rb, (int)ctx);
}

/* receive([size]) and receivefrom([size]) */
static int doreceive(lua_State *L, Obj *o, int from) {
  tsk_Sched *S = tsk_upsched(L);
  size_t size;
  RecvBuf *rb;
  Udp *u = o->u;
  tsk_Tasklet *t;
  double left;
  if (!getsize(L, &size)) return tsk_fail(L, "out of memory");
  tsk_timeout_markstart(&o->tm);
  lua_settop(L, 1);
  if (u == NULL) {  /* LuaSocket: a "closed" recv counts as an empty datagram */
    if (from) return tsk_fail(L, gai_strerror(EAI_FAMILY));  /* (its garbage address) */
    lua_pushliteral(L, "");
    return 1;
  }
  rb = getbuf(L, size);
  rb->u = u;
  if (u->readers.head == NULL) {  /* nobody before us: try at once */
    int fd = fdof(o);
    socklen_t flen = sizeof rb->from;
    ssize_t n;
    do n = recvfrom(fd, rb->data, rb->cap, 0, (struct sockaddr *)&rb->from, &flen);
    while (n < 0 && errno == EINTR);
    if (n >= 0) {
      rb->len = (size_t)n > rb->want ? rb->want : (size_t)n;
      return pushdgram(L, rb, from);
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      rb->status = -errno;
      return pushdgram(L, rb, from);
    }
  }
  left = tsk_timeout_left(&o->tm);
  if (left == 0) {
    putbuf(L);
    return tsk_fail(L, "timeout");
  }
  t = tsk_self(S);
  tsk_checkblock(L, S);
  tsk_queue_push(&u->readers, t);
  t->won = TSK_ON_SOCKET;
  t->wobj = rb;
  t->wcancel = readercancel;
  startreceiving(u);
  return tsk_wait(L, t, left, (lua_KContext)from, receivek);
}

/* udp:receive([size]): datagram | nil, err */
static int meth_receive(lua_State *L) {
  Obj *o = (Obj *)tsk_class_checkgroup(L, ANY, 1);
  return doreceive(L, o, 0);
}

/* udp:receivefrom([size]): datagram, ip, port | nil, err */
static int meth_receivefrom(lua_State *L) {
  Obj *o = (Obj *)tsk_class_check(L, UNCONNECTED, 1);
  return doreceive(L, o, 1);
}

/* --- sending -------------------------------------------------------- */

static void send_cb(uv_udp_send_t *req, int status) {
  (void)status;  /* a datagram may be lost; LuaSocket's too */
  free(req);
}

/* Send data (to addr, or the peer when NULL). */
static int dosend(lua_State *L, Obj *o, const char *data, size_t len,
                  const struct sockaddr *addr) {
  uv_buf_t b = uv_buf_init((char *)(uintptr_t)data, (unsigned)len);
  int n;
  if (o->u == NULL) return udpfail(L, TSK_WCLOSED);
  n = uv_udp_try_send(&o->u->h, &b, 1, addr);
  if (n == UV_EAGAIN) {  /* the kernel's buffer is full: let libuv hold a copy */
    SendReq *r;
    if (uv_udp_get_send_queue_count(&o->u->h) >= MAXQUEUED)
      return tsk_fail(L, "timeout");
    r = (SendReq *)malloc(offsetof(SendReq, data) + (len ? len : 1));
    if (r == NULL) return tsk_fail(L, "out of memory");
    memcpy(r->data, data, len);
    b = uv_buf_init(r->data, (unsigned)len);
    n = uv_udp_send(&r->req, &o->u->h, &b, 1, addr, send_cb);
    if (n != 0) {
      free(r);
      return udpfail(L, n);
    }
    n = (int)len;
  }
  if (n < 0) return udpfail(L, n);
  o->u->S->bytesout += (uint64_t)n;
  lua_pushnumber(L, (lua_Number)n);
  return 1;
}

/* udp:send(datagram): bytes | nil, err */
static int meth_send(lua_State *L) {
  Obj *o = (Obj *)tsk_class_check(L, CONNECTED, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  tsk_timeout_markstart(&o->tm);
  return dosend(L, o, data, len, NULL);
}

/* udp:sendto(datagram, ip, port): bytes | nil, err. The address must be
** numeric (no lookup), as in LuaSocket. */
static int meth_sendto(lua_State *L) {
  Obj *o = (Obj *)tsk_class_check(L, UNCONNECTED, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  const char *ip = luaL_checkstring(L, 3);
  const char *port = luaL_checkstring(L, 4);
  struct addrinfo hints, *ai = NULL;
  int e, r;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = o->family;
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  e = getaddrinfo(ip, port, &hints, &ai);
  if (e != 0) return tsk_fail(L, gai_strerror(e));
  if (o->family == AF_UNSPEC && o->u == NULL) {  /* made on first use */
    struct addrinfo *p;
    e = UV_EAFNOSUPPORT;
    for (p = ai; p != NULL && e != 0; p = p->ai_next)
      e = makesocket(L, o, p->ai_family);
    if (e != 0) {
      freeaddrinfo(ai);
      return tsk_sock_fail(L, e);
    }
  }
  tsk_timeout_markstart(&o->tm);
  r = dosend(L, o, data, len, ai->ai_addr);
  freeaddrinfo(ai);
  return r;
}

/* --- naming --------------------------------------------------------- */

/* After a lookup for setsockname (ctx 0) or setpeername (ctx 1): try each
** address, making the socket when there is none or its family differs. */
static int bindconnectk(lua_State *L, int status, lua_KContext ctx) {
  Obj *o = (Obj *)lua_touserdata(L, 1);
  tsk_Tasklet *t = tsk_self(tsk_upsched(L));
  const struct addrinfo *ai;
  int e = UV_EINVAL, family = o->family;
  struct sockaddr_storage was;  /* the peer, for a failed setpeername */
  int waslen = (int)sizeof was;
  Udp *had = ctx == 1 && o->u != NULL &&
             uv_udp_getpeername(&o->u->h, (struct sockaddr *)&was, &waslen) == 0 ? o->u : NULL;
  (void)status;
  if (t->wresult != 0) return tsk_fail(L, tsk_gai_strerror(t->wresult));
  for (ai = tsk_addrinfo_get(L, -1); ai != NULL; ai = ai->ai_next) {
    if (o->u == NULL || o->family != ai->ai_family) {
      Obj old = *o;
      if ((e = makesocket(L, o, ai->ai_family)) != 0) {
        *o = old;
        continue;
      }
      if (old.u != NULL) {  /* LuaSocket drops the socket of the other family */
        Obj tmp = old;
        closesocket(&tmp);
      }
    }
    if (ctx == 0)
      e = uv_udp_bind(&o->u->h, ai->ai_addr, 0);
    else {
      uv_udp_connect(&o->u->h, NULL);  /* libuv connects only a free socket */
      e = uv_udp_connect(&o->u->h, ai->ai_addr);  /* (UV_ENOTCONN if free) */
    }
    if (e == 0) break;
  }
  lua_pop(L, 1);
  if (e != 0 && had != NULL && had == o->u)  /* the kernel keeps the old peer */
    uv_udp_connect(&o->u->h, (struct sockaddr *)&was);  /* when connect fails */
  if (e != 0) {
    /* LuaSocket keeps the socket it made but not its family: udp() is
    ** still "unspec" (getsockname says so) and remakes it next time. */
    if (o->u != NULL) o->family = family;
    return tsk_sock_fail(L, e);
  }
  if (ctx == 1) tsk_class_set(L, tsk_upsched(L), 1, CONNECTED);
  startreceiving(o->u);  /* for readers waiting since before it was bound */
  lua_pushnumber(L, 1);
  return 1;
}

/* udp:setsockname(address, port): 1 | nil, err */
static int meth_setsockname(lua_State *L) {
  Obj *o = (Obj *)tsk_class_check(L, UNCONNECTED, 1);
  const char *host = luaL_checkstring(L, 2);
  const char *port = luaL_checkstring(L, 3);
  struct addrinfo hints;
  lua_settop(L, 3);
  memset(&hints, 0, sizeof hints);
  hints.ai_family = o->family;
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_PASSIVE;
  if (strcmp(host, "*") == 0) host = NULL;
  return tsk_getaddrinfo(L, host, port, &hints, 0, bindconnectk);
}

/* udp:setpeername(address, port) connects; setpeername("*") disconnects.
** 1 | nil, err */
static int meth_setpeername(lua_State *L) {
  Obj *o = (Obj *)tsk_class_checkgroup(L, ANY, 1);
  const char *host = luaL_checkstring(L, 2);
  const char *port;
  struct addrinfo hints;
  if (strcmp(host, "*") == 0) {
    if (o->u != NULL) uv_udp_connect(&o->u->h, NULL);  /* errors ignored, as LuaSocket */
    tsk_class_set(L, tsk_upsched(L), 1, UNCONNECTED);
    lua_pushnumber(L, 1);
    return 1;
  }
  port = luaL_checkstring(L, 3);
  lua_settop(L, 3);
  memset(&hints, 0, sizeof hints);
  hints.ai_family = o->family;
  hints.ai_socktype = SOCK_DGRAM;
  return tsk_getaddrinfo(L, host, port, &hints, 1, bindconnectk);
}

/* udp:getsockname(): ip, port (a string), family | nil, err. The family
** is the object's, as LuaSocket ("unspec" after a failed setsockname). */
static int meth_getsockname(lua_State *L) {
  Obj *o = (Obj *)tsk_class_checkgroup(L, ANY, 1);
  struct sockaddr_storage ss;
  int len = (int)sizeof ss, e, n;
  if (o->u == NULL) return tsk_sock_fail(L, UV_EBADF);
  e = uv_udp_getsockname(&o->u->h, (struct sockaddr *)&ss, &len);
  if (e != 0) return tsk_sock_fail(L, e);
  n = tsk_addr_push(L, (struct sockaddr *)&ss, 1);
  if (n == 3 && o->family == AF_UNSPEC) {
    lua_pushliteral(L, "unspec");
    lua_replace(L, -2);
  }
  return n;
}

/* udp:getpeername(): ip, port (a number), family | nil, err */
static int meth_getpeername(lua_State *L) {
  Obj *o = (Obj *)tsk_class_check(L, CONNECTED, 1);
  struct sockaddr_storage ss;
  int len = (int)sizeof ss, e;
  if (o->u == NULL) return tsk_sock_fail(L, UV_EBADF);
  e = uv_udp_getpeername(&o->u->h, (struct sockaddr *)&ss, &len);
  if (e != 0) return tsk_sock_fail(L, e);
  return tsk_addr_push(L, (struct sockaddr *)&ss, 0);
}

/* --- the rest of the methods ---------------------------------------- */

static int meth_getfamily(lua_State *L) {
  Obj *o = (Obj *)tsk_class_checkgroup(L, ANY, 1);
  lua_pushstring(L, o->family == AF_INET6 ? "inet6" : "inet4");
  return 1;
}

static int meth_getfd(lua_State *L) {
  Obj *o = (Obj *)tsk_class_checkgroup(L, ANY, 1);
  lua_pushnumber(L, fdof(o));  /* a float, as LuaSocket */
  return 1;
}

/*
** udp:setfd(fd): LuaSocket just overwrites its descriptor. Here the
** current socket is let go of without closing its descriptor (whoever got
** it with getfd keeps it), and fd, if >= 0, is adopted as the socket.
*/
static int meth_setfd(lua_State *L) {
  Obj *o = (Obj *)tsk_class_checkgroup(L, ANY, 1);
  int fd = tsk_num2int(luaL_checknumber(L, 2));
  int cur = fdof(o);
  if (fd == cur) return 0;
  if (cur >= 0) {  /* libuv closes its descriptor: keep the number open */
    int keep = dup(cur);
    closesocket(o);
    if (keep >= 0) {
      dup2(keep, cur);
      close(keep);
    }
  }
  if (fd >= 0) {
    tsk_Sched *S = tsk_upsched(L);
    Udp *u = (Udp *)calloc(1, sizeof *u);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (u == NULL) return luaL_error(L, "not enough memory");
    uv_udp_init(S->loop, &u->h);
    u->S = S;
    u->h.data = u;
    tsk_handle_opened(S, (uv_handle_t *)&u->h);
    o->u = u;
    if (uv_udp_open(&u->h, fd) != 0) closesocket(o);
    else if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0 &&
             (ss.ss_family == AF_INET || ss.ss_family == AF_INET6))
      o->family = ss.ss_family;
  }
  return 0;
}

static int meth_dirty(lua_State *L) {
  tsk_class_checkgroup(L, ANY, 1);
  lua_pushboolean(L, 0);  /* nothing is ever buffered here */
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
  if (o != NULL) closesocket(o);  /* (NULL: called by hand on something else) */
  return 0;
}

/* --- options -------------------------------------------------------- */

static int set_mcast_ttl(lua_State *L, int fd, void *obj) {
  (void)obj;
  return tsk_opt_setint(L, fd, IPPROTO_IP, IP_MULTICAST_TTL);
}

static int set_mcast_loop(lua_State *L, int fd, void *obj) {
  (void)obj;
  return tsk_opt_setbool(L, fd, IPPROTO_IP, IP_MULTICAST_LOOP);
}

static int get_mcast_loop(lua_State *L, int fd, void *obj) {
  (void)obj;
  return tsk_opt_getbool(L, fd, IPPROTO_IP, IP_MULTICAST_LOOP);
}

static int set_mcast6_loop(lua_State *L, int fd, void *obj) {
  (void)obj;
  return tsk_opt_setbool(L, fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP);
}

static int get_mcast6_loop(lua_State *L, int fd, void *obj) {
  (void)obj;
  return tsk_opt_getbool(L, fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP);
}

/* LuaSocket maps both ipv6-unicast-hops and ipv6-multicast-hops to
** IPV6_UNICAST_HOPS; kept, since scripts see it. */
static int set_hops(lua_State *L, int fd, void *obj) {
  (void)obj;
  return tsk_opt_setint(L, fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS);
}

static int get_hops(lua_State *L, int fd, void *obj) {
  (void)obj;
  return tsk_opt_getint(L, fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS);
}

static int setraw(lua_State *L, int fd, int level, int name, const void *v,
                  socklen_t len) {
  if (fd < 0 || setsockopt(fd, level, name, v, len) < 0)
    return tsk_fail(L, "setsockopt failed");
  lua_pushnumber(L, 1);
  return 1;
}

static int set_mcast_if(lua_State *L, int fd, void *obj) {
  const char *ip = luaL_checkstring(L, 3);
  struct in_addr a;
  (void)obj;
  a.s_addr = htonl(INADDR_ANY);
  if (strcmp(ip, "*") != 0 && !inet_aton(ip, &a)) luaL_argerror(L, 3, "ip expected");
  return setraw(L, fd, IPPROTO_IP, IP_MULTICAST_IF, &a, sizeof a);
}

static int get_mcast_if(lua_State *L, int fd, void *obj) {
  struct in_addr a;
  socklen_t len = sizeof a;
  char ip[INET_ADDRSTRLEN];
  (void)obj;
  if (fd < 0 || getsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &a, &len) < 0)
    return tsk_fail(L, "getsockopt failed");
  lua_pushstring(L, inet_ntop(AF_INET, &a, ip, sizeof ip));
  return 1;
}

/* The field of the table at 3 as a string, or an argument error. */
static const char *strfield(lua_State *L, const char *field) {
  lua_getfield(L, 3, field);
  if (!lua_isstring(L, -1)) {
    lua_pushfstring(L, "string '%s' field expected", field);
    luaL_argerror(L, 3, lua_tostring(L, -1));
  }
  return lua_tostring(L, -1);
}

static int membership(lua_State *L, int fd, int name) {
  struct ip_mreq m;
  const char *s;
  if (!lua_istable(L, 3)) luaL_typeerror(L, 3, "table");
  s = strfield(L, "multiaddr");
  if (!inet_aton(s, &m.imr_multiaddr))
    luaL_argerror(L, 3, "invalid 'multiaddr' ip address");
  s = strfield(L, "interface");
  m.imr_interface.s_addr = htonl(INADDR_ANY);
  if (strcmp(s, "*") != 0 && !inet_aton(s, &m.imr_interface))
    luaL_argerror(L, 3, "invalid 'interface' ip address");
  return setraw(L, fd, IPPROTO_IP, name, &m, sizeof m);
}

static int membership6(lua_State *L, int fd, int name) {
  struct ipv6_mreq m;
  memset(&m, 0, sizeof m);
  if (!lua_istable(L, 3)) luaL_typeerror(L, 3, "table");
  if (inet_pton(AF_INET6, strfield(L, "multiaddr"), &m.ipv6mr_multiaddr) != 1)
    luaL_argerror(L, 3, "invalid 'multiaddr' ip address");
  lua_getfield(L, 3, "interface");
  if (!lua_isnil(L, -1)) {
    if (!lua_isnumber(L, -1)) luaL_argerror(L, 3, "number 'interface' field expected");
    m.ipv6mr_interface = (unsigned)tsk_num2long(lua_tonumber(L, -1));
  }
  return setraw(L, fd, IPPROTO_IPV6, name, &m, sizeof m);
}

static int set_addmember(lua_State *L, int fd, void *obj) {
  (void)obj;
  return membership(L, fd, IP_ADD_MEMBERSHIP);
}

static int set_dropmember(lua_State *L, int fd, void *obj) {
  (void)obj;
  return membership(L, fd, IP_DROP_MEMBERSHIP);
}

static int set_addmember6(lua_State *L, int fd, void *obj) {
  (void)obj;
  return membership6(L, fd, IPV6_ADD_MEMBERSHIP);
}

static int set_dropmember6(lua_State *L, int fd, void *obj) {
  (void)obj;
  return membership6(L, fd, IPV6_DROP_MEMBERSHIP);
}

static const tsk_Option options[] = {
  {"dontroute", tsk_opt_set_dontroute, tsk_opt_get_dontroute},
  {"broadcast", tsk_opt_set_broadcast, tsk_opt_get_broadcast},
  {"reuseaddr", tsk_opt_set_reuseaddr, tsk_opt_get_reuseaddr},
  {"reuseport", tsk_opt_set_reuseport, tsk_opt_get_reuseport},
  {"ip-multicast-if", set_mcast_if, get_mcast_if},
  {"ip-multicast-ttl", set_mcast_ttl, NULL},
  {"ip-multicast-loop", set_mcast_loop, get_mcast_loop},
  {"ip-add-membership", set_addmember, NULL},
  {"ip-drop-membership", set_dropmember, NULL},
  {"ipv6-unicast-hops", set_hops, get_hops},
  {"ipv6-multicast-hops", set_hops, get_hops},
  {"ipv6-multicast-loop", set_mcast6_loop, get_mcast6_loop},
  {"ipv6-add-membership", set_addmember6, NULL},
  {"ipv6-drop-membership", set_dropmember6, NULL},
  {"ipv6-v6only", tsk_opt_set_ipv6only, tsk_opt_get_ipv6only},
  {"recv-buffer-size", tsk_opt_set_recvbuf, tsk_opt_get_recvbuf},
  {"send-buffer-size", tsk_opt_set_sendbuf, tsk_opt_get_sendbuf},
  {"error", NULL, tsk_opt_get_error},
  {NULL, NULL, NULL}
};

static int meth_setoption(lua_State *L) {
  Obj *o = (Obj *)tsk_class_checkgroup(L, ANY, 1);
  return tsk_opt_meth_setoption(L, options, fdof(o), o);
}

static int meth_getoption(lua_State *L) {
  Obj *o = (Obj *)tsk_class_checkgroup(L, ANY, 1);
  return tsk_opt_meth_getoption(L, options, fdof(o), o);
}

/* --- constructors --------------------------------------------------- */

static int create(lua_State *L, int family) {
  Obj *o = (Obj *)lua_newuserdatauv(L, sizeof *o, 1);
  o->u = NULL;
  o->family = family;
  tsk_timeout_init(&o->tm, -1, -1);
  tsk_class_set(L, tsk_upsched(L), -1, UNCONNECTED);
  if (family != AF_UNSPEC) {
    int e = makesocket(L, o, family);
    if (e != 0) return tsk_sock_fail(L, e);
  }
  return 1;
}

/* --- readiness for socket.select (socket.h) -------------------------- */

/* Readable: a datagram is queued in the kernel (we never read ahead).
** Writable: always (sends never wait). */
static int udp_ready(lua_State *L, int idx, int write) {
  Obj *o = (Obj *)lua_touserdata(L, idx);
  struct pollfd p;
  if (o->u == NULL || write) return 1;
  /* poll, as LuaSocket's select: a peek (recv MSG_PEEK) would take the
  ** pending error (an ICMP "connection refused") the next receive must
  ** report. A datagram or an error makes it readable. */
  p.fd = fdof(o);
  p.events = POLLIN;
  p.revents = 0;
  return poll(&p, 1, 0) != 0;
}

/* Wait with uv_udp_recv_start: with no reader, alloc_cb offers no buffer,
** libuv leaves the datagram queued and recv_cb fires the watchers (and
** stops receiving: select checks again and watches anew if need be). */
static int udp_watch(lua_State *L, int idx, int write, tsk_Watch *w) {
  Obj *o = (Obj *)lua_touserdata(L, idx);
  Udp *u = o->u;
  if (u == NULL || write || !isbound(u)) return 1;
  tsk_watch_link(&u->watchers, w, u);
  tsk_handle_waiting((uv_handle_t *)&u->h, 1);
  if (!u->receiving && uv_udp_recv_start(&u->h, alloc_cb, recv_cb) == 0)
    u->receiving = 1;
  return 0;
}

static void udp_unwatch(tsk_Watch *w) {
  Udp *u = (Udp *)w->obj;
  tsk_watch_unlink(w);
  if (u->readers.head == NULL && u->watchers == NULL) stopreceiving(u);
}

static const tsk_Ready udp_readiness = {udp_ready, udp_watch, udp_unwatch};

/* socket.udp(): an object whose socket is made when first needed */
static int global_udp(lua_State *L) { return create(L, AF_UNSPEC); }
static int global_udp4(lua_State *L) { return create(L, AF_INET); }
static int global_udp6(lua_State *L) { return create(L, AF_INET6); }

void tsk_udp_open(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"__gc", meth_gc},
    {"__close", meth_gc},
    {"close", meth_close},
    {"dirty", meth_dirty},
    {"getfamily", meth_getfamily},
    {"getfd", meth_getfd},
    {"getpeername", meth_getpeername},
    {"getsockname", meth_getsockname},
    {"receive", meth_receive},
    {"receivefrom", meth_receivefrom},
    {"send", meth_send},
    {"sendto", meth_sendto},
    {"setfd", meth_setfd},
    {"setoption", meth_setoption},
    {"getoption", meth_getoption},
    {"setpeername", meth_setpeername},
    {"setsockname", meth_setsockname},
    {"settimeout", meth_settimeout},
    {"gettimeout", meth_gettimeout},
    {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"udp", global_udp},
    {"udp4", global_udp4},
    {"udp6", global_udp6},
    {NULL, NULL}
  };
  tsk_Sched *S = tsk_sched(L);
  tsk_class_new(L, S, CONNECTED, methods);
  tsk_class_new(L, S, UNCONNECTED, methods);
  tsk_class_group(L, CONNECTED, ANY);
  tsk_class_group(L, UNCONNECTED, ANY);
  tsk_class_group(L, CONNECTED, "select{able}");
  tsk_class_group(L, UNCONNECTED, "select{able}");
  tsk_class_ready(L, CONNECTED, &udp_readiness);
  tsk_class_ready(L, UNCONNECTED, &udp_readiness);
  tsk_socket_setfuncs(L, S, funcs);
}
