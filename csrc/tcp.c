/*
** tcp.c: LuaSocket's TCP classes (tcp{master}, tcp{client}, tcp{server})
** on libuv, where a call that would block suspends only its tasklet.
**
** Two pieces of memory per socket:
**  - the userdata (a Box): what only Lua calls touch (timeouts, stats,
**    the line bound) and a pointer to
**  - the block (a Tcp), malloc'd, ending with the descriptor's tsk_Io in
**    the scheduler's poller (poller.h): what the loop touches. It is freed
**    in the close callback only, so the loop never sees freed memory even
**    when the userdata was collected first.
** The block does its reads, writes and connects itself (read(2), send(2),
** connect(2)) when the poller says the descriptor is ready: a tsk_Io is
** 200 bytes smaller than libuv's uv_tcp_t, and one per connection counts;
** and a connection costs two epoll_ctl, as libuv's own TCP handles do.
** tcp() makes no block (no fd) until bind/connect; tcp4/tcp6 make it at
** once. The string a write sends is anchored until the write is done.
**
** Reading: from its first receive (or select) on, the socket reads ahead
** into its buffer, up to TCP_HIGHWATER bytes or what the waiting receive
** needs; receive is served from there. Before it, what came stays in the
** kernel, as under LuaSocket: a descriptor handed to another object
** (LuaSec's wrap: getfd, setfd) or polled through an object's getfd finds
** it there. A socket with nothing buffered reads into
** the scheduler's shared buffer: when what came settles the receive its
** head reader waits in, readready makes the result string from there and
** hands it over (TSK_WDONE); only bytes beyond it (or all, when nobody
** waits) are copied, into a buffer made to measure. Request/response
** traffic so needs no buffer of its own per socket. One that reads big
** chunks (c->bulk) reads straight into its own buffer instead.
** Writing: send(2) at once; only the rest waits for the descriptor to be
** writable, one write in flight at a time.
** The io keeps the loop alive only while a tasklet waits on it.
*/
#define _GNU_SOURCE  /* accept4 */
#include <errno.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>
#include <poll.h>
#include <limits.h>
#include <signal.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/un.h>

#include "socket.h"
#include "buffer.h"
#include "poller.h"

#define TCP_HIGHWATER (64 * 1024)   /* read-ahead stops above this */
#define TCP_MAXLINE   (TSK_BUF_MAX - 1) /* default "*l" bound: none below the buffer cap, as LuaSocket */
#define TCP_MINREAD   4096          /* least room offered to a read */
#define TCP_BULK      4096          /* a read of this much sets c->bulk */
#define TCP_SMALL     1024          /* one below this clears it */

/* Connect states (Tcp.cstate). LuaSocket's scripts see the kernel's
** socket, which keeps a failed connect's error (SO_ERROR) until connect or
** getoption("error") takes it; the loop takes it first, so werr keeps it:
**   C_FAILED   the loop saw the failure; werr holds it, as SO_ERROR would
**   C_STOLEN   as C_FAILED, but a script took the error from the kernel
**              before the loop saw it, so the connect is still watched
**   C_LIMBO    C_STOLEN once the failure was reported: the kernel socket is
**              unconnected, the watch for the connect still runs
** In C_FAILED and C_STOLEN, werr UV_ECONNABORTED says getoption("error")
** took the error: connect then says "closed", as the kernel does. */
enum { C_NONE, C_PENDING, C_DONE, C_FAILED, C_CONNECTED, C_STOLEN, C_LIMBO };

/* Busy states (Tcp.busy): what is in flight, waiting for writability. */
enum { B_NONE, B_CONNECT, B_WRITE };

/* Seconds a closed socket may linger to deliver a write in flight. */
#define TCP_LINGER 60

struct Tcp;

/* The write in flight (busy B_WRITE), lazily allocated, reused. */
typedef struct Req {
  const char *wbase;       /* its bytes not yet written */
  size_t wlen;
  int anchor;              /* the string being written (tsk_anchor) */
  /* a closed socket lingering for its write (see lingerclose) */
  struct Tcp *lnext, **lprev;  /* in the scheduler's lingering list */
} Req;

typedef struct Tcp {
  tsk_Buffer buf;          /* bytes read ahead; its spare word is leftover */
  tsk_Recv rpat;           /* the pattern of the head reader */
  tsk_Queue readers;       /* tasklets in receive/accept; the head reads
                              (headreader) */
  tsk_Queue writers;       /* tasklets waiting for their turn to write */
  tsk_Tasklet *wowner;     /* waits for what is in flight, if anyone */
  tsk_Watch *watchers;     /* selects waiting on it (socket.h, select.c) */
  Req *req;                /* lazily allocated, reused: one at a time */
  int16_t rerr;            /* read side ended: UV_EOF or an error */
  int16_t werr;            /* result of the last connect or write */
  unsigned char family;
  unsigned detached : 1;   /* setfd(-1): closing leaves the descriptor open */
  unsigned busy : 2;       /* B_*: a connect or write in flight */
  unsigned cstate : 3;     /* C_* */
  unsigned reading : 1;    /* reading ahead (its io polls for readable) */
  unsigned pending : 1;    /* server: a connection waits for accept */
  unsigned lingering : 1;  /* closed, delivering its write (lingerclose) */
  unsigned listening : 1;  /* a server: h watches for connections */
  unsigned bulk : 1;       /* reads come big: read into buf, not S->rbuf */
  unsigned delayed : 1;    /* the connect failed at once: werr reports it
                              when the loop comes round, as libuv does */
  unsigned wwatch : 1;     /* a select waits for it to be writable */
  unsigned rwatch : 1;     /* a select waits for it to be readable */
  unsigned kready : 1;     /* the poll saw bytes (or the end) nobody read yet */
  unsigned shutrd : 1;     /* shutdown("receive"): an end read is not final */
  tsk_Io io;               /* the descriptor (block_fd) in the scheduler's
                              poller */
} Tcp;

/* The bytes the last receive left buffered (the buffer's spare word):
** dirty() as in LuaSocket, where bytes read ahead since then would still be
** in the kernel. */
#define LEFTOVER(c) ((c)->buf.spare)

/* The scheduler of block c. */
#define SCHED(c) ((c)->io.S)

/* The block of an io. */
#define BLOCK(iop) ((Tcp *)(void *)((char *)(iop) - offsetof(Tcp, io)))

/* The class names of a stream kind: TCP or Unix domain, which share
** everything here but addresses (socket.unix: unixstream{...}). */
typedef struct Kind {
  const char *master, *client, *server, *any;
} Kind;

typedef struct Box {
  const Kind *k;           /* &tcpkind or &unixkind: marks a box (checkbox) */
  Tcp *c;                  /* NULL: no descriptor (not yet, or closed) */
  tsk_Timeout tm;
  double birthday, received, sent;
  uint32_t maxline;        /* "*l" bound (setoption "max-line") */
  unsigned char family;    /* AF_UNSPEC until chosen */
  unsigned char role;      /* R_MASTER, R_CLIENT or R_SERVER: its class */
  unsigned char trial;     /* this connect began with no family chosen */
  unsigned char renew;     /* the next connect makes a new descriptor */
} Box;

#define MASTER "tcp{master}"
#define CLIENT "tcp{client}"
#define SERVER "tcp{server}"
#define ANY    "tcp{any}"
#define STREAM "stream{any}"   /* every class of both kinds */

static const Kind tcpkind = {MASTER, CLIENT, SERVER, ANY};
static const Kind unixkind = {"unixstream{master}", "unixstream{client}",
                              "unixstream{server}", "unixstream{any}"};

enum { R_MASTER, R_CLIENT, R_SERVER, R_ANY };

/* The box at 1 if it is of role for its kind, else LuaSocket's argument
** error naming the class of its kind (TCP's for anything else). Every
** method checks, so a box is known without Lua table lookups: a full
** userdata of a box's size whose kind is one of ours (an address no Lua
** value reveals), with the role its class was set to (setrole). */
/* The box at 1, known by its size and its kind pointer, which no other
** userdata holds: no metatable look-up (a class made from ours by Lua
** code is found by testgroup). NULL if it is not one so. */
static Box *fastbox(lua_State *L) {
  Box *b = (Box *)lua_touserdata(L, 1);
  return b != NULL && lua_rawlen(L, 1) == sizeof *b &&
         (b->k == &tcpkind || b->k == &unixkind) ? b : NULL;
}

static void *checkbox(lua_State *L, int role) {
  Box *b = fastbox(L);
  if (b != NULL && (role == R_ANY || b->role == role)) return b;
  b = (Box *)tsk_class_testgroup(L, STREAM, 1);
  const Kind *k = b != NULL ? b->k : &tcpkind;
  switch (role) {
    case R_MASTER: return tsk_class_check(L, k->master, 1);
    case R_CLIENT: return tsk_class_check(L, k->client, 1);
    case R_SERVER: return tsk_class_check(L, k->server, 1);
    default: return tsk_class_checkgroup(L, k->any, 1);
  }
}

/* --- the block -------------------------------------------------------- */

static void block_close_cb(tsk_Io *io) {
  Tcp *c = BLOCK(io);
  free(c->req);
  tsk_buf_free(&c->buf);
  free(c);
}

static void lis_cb(tsk_Io *io, int status, int events);
static void io_cb(tsk_Io *io, int status, int events);

/* Poll for what c needs now: readable while it reads ahead, writable while
** a connect or write is in flight. (A server's watch is refresh's.) */
static void repoll(Tcp *c) {
  unsigned want = (c->reading ? UV_READABLE : 0) |
                  (c->busy != B_NONE || c->wwatch ? UV_WRITABLE : 0);
  if (want != c->io.want && !c->listening) tsk_io_poll(&c->io, want);
}

/* Is a tasklet waiting on c? Then its io keeps the loop alive (a
** server's: its watch, which runs while anyone waits). */
static void refresh(Tcp *c) {
  int waiting = c->readers.head != NULL || c->writers.head != NULL || c->wowner != NULL ||
                c->watchers != NULL;
  if (c->listening && waiting && c->io.want == 0) tsk_io_poll(&c->io, UV_READABLE);
  tsk_io_ref(&c->io, waiting);
}

/* A new block for the descriptor fd (which it then owns), or with fd < 0
** for a new descriptor of family; 0 or a negative uv error. accepted: fd
** is what accept4 gave us (non-blocking): nothing to check. */
static int block_new(tsk_Sched *S, int family, int fd, int accepted, Tcp **out) {
  int made = fd < 0, r;
  Tcp *c;
  *out = NULL;
  if (made) {
    fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -errno;
    if (family == AF_INET6) {  /* as LuaSocket makes every IPv6 socket */
      int on = 1;              /* (tcp6, or tcp() binding or connecting */
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, (socklen_t)sizeof on);  /* to IPv6) */
    }
  }
  c = (Tcp *)calloc(1, sizeof *c);
  if (c == NULL) r = UV_ENOMEM;
  else if ((r = tsk_io_init(S, &c->io, fd, io_cb, block_close_cb, !made && !accepted)) != 0)
    free(c);
  if (r != 0) {
    if (made) close(fd);
    return r;
  }
  c->family = (unsigned char)family;
  *out = c;
  return 0;
}

int tsk_stream_readahead(tsk_Io *io) {
  Tcp *c = BLOCK(io);  /* (the poller's ios are all blocks) */
  return tsk_buf_len(&c->buf) > LEFTOVER(c) || c->rerr != 0;
}

/* The descriptor of c, or -1 (none, or c is closing). */
static int block_fd(Tcp *c) {
  return c != NULL && !c->io.closing ? c->io.fd : -1;
}

/* Take the kernel's pending error of c's socket (SO_ERROR, which reading
** it clears): a negative code, or 0 if there is none. */
static int takesoerror(Tcp *c) {
  int v = 0;
  socklen_t len = (socklen_t)sizeof v;
  if (getsockopt(block_fd(c), SOL_SOCKET, SO_ERROR, &v, &len) != 0) return 0;
  return -v;
}

/* Every tasklet waiting on c is woken with "closed". */
static void block_wakeall(Tcp *c) {
  tsk_Tasklet *t = c->wowner;
  c->wowner = NULL;
  if (t != NULL) {
    t->wcancel = NULL;
    tsk_wake(t, TSK_WCLOSED, NULL, 0);
  }
  tsk_queue_wakeall(&c->readers, TSK_WCLOSED);
  tsk_queue_wakeall(&c->writers, TSK_WCLOSED);
  tsk_watch_closeall(&c->watchers);
}

/* Close c's io, then its descriptor (unless detached): the loop polls
** it no more once tsk_io_close returned. */
static void block_shut(Tcp *c) {
  int fd = c->detached ? -1 : block_fd(c);
  tsk_io_close(&c->io);
  if (fd >= 0) close(fd);
}

/* Close c, waking everyone waiting on it; a write in flight is dropped. */
static void block_close(Tcp *c) {
  block_wakeall(c);
  if (c->busy == B_WRITE && !SCHED(c)->closing) tsk_unanchor(SCHED(c), c->req->anchor);
  c->busy = B_NONE;
  block_shut(c);
  tsk_buf_free(&c->buf);  /* no read after uv_close */
}

/* --- lingering -------------------------------------------------------- */

/* A write still in flight was reported as sent by send() (it timed out,
** or its tasklet was killed): under LuaSocket those bytes would be in the
** kernel, which delivers them after close. So close() and collection let
** such a block linger until it has written them (bounded by
** TCP_USER_TIMEOUT), unless linger{on, timeout 0} asks for an abort. The
** string being written is anchored (tsk_anchor) until writedone. The state
** closing closes every lingering block at once (lingerall). */

static void lingerdone(Tcp *c) {
  Req *req = c->req;
  *req->lprev = req->lnext;
  if (req->lnext != NULL) req->lnext->req->lprev = req->lprev;
  c->lingering = 0;
  c->busy = B_NONE;  /* written, or (the state closes) dropped */
  block_shut(c);
}

/* Hand the kernel what it takes now of the write in flight, in order.
** The kernel delivers it after close, as it would have for LuaSocket; the
** rest is lost. */
static void flushnow(Tcp *c) {
  size_t left = c->req->wlen;
  const char *p = c->req->wbase;
  int fd = block_fd(c);
  if (left == 0 || fd < 0) return;
  if (left <= (size_t)INT_MAX / 2) {  /* room for it all, if the kernel allows */
    int size = (int)left * 2;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, (socklen_t)sizeof size);
  }
  while (left > 0) {
    ssize_t n = send(fd, p, left, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    p += n;
    left -= (size_t)n;
  }
}

/* The state is closing: what is in flight goes to the kernel if it fits. */
static void lingerall(tsk_Sched *S) {
  while (S->lingering != NULL) {
    flushnow((Tcp *)S->lingering);
    lingerdone((Tcp *)S->lingering);
  }
}

/* Close c lingering; 0 if it must close at once instead. */
static int lingerclose(Tcp *c) {
  struct linger li;
  socklen_t len = (socklen_t)sizeof li;
  int fd = block_fd(c);
  Req *req = c->req;
  if (c->busy != B_WRITE || SCHED(c)->closing) return 0;
  if (getsockopt(fd, SOL_SOCKET, SO_LINGER, &li, &len) == 0 && li.l_onoff && li.l_linger == 0)
    return 0;
#ifdef TCP_USER_TIMEOUT
  if (c->family != AF_UNIX) {
    unsigned ms = TCP_LINGER * 1000;
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, (socklen_t)sizeof ms);
  }
#endif
  block_wakeall(c);
  c->reading = 0;
  repoll(c);  /* writable only */
  tsk_buf_free(&c->buf);
  req->lnext = (Tcp *)SCHED(c)->lingering;
  req->lprev = (Tcp **)&SCHED(c)->lingering;
  if (req->lnext != NULL) req->lnext->req->lprev = &req->lnext;
  SCHED(c)->lingering = c;
  SCHED(c)->atclose = lingerall;
  c->lingering = 1;
  return 1;
}

static void box_close(Box *b) {
  if (b->c != NULL) {
    block_close(b->c);
    b->c = NULL;
  }
}

static Req *getreq(Tcp *c) {
  if (c->req == NULL) c->req = (Req *)malloc(sizeof *c->req);
  return c->req;
}

static void wakehead(tsk_Queue *q) {
  if (q->head != NULL) tsk_wake(q->head, TSK_WOK, NULL, 0);
}

static int takeerror(Tcp *c);

/* --- reading ahead ---------------------------------------------------- */

/* Where the next read goes: the shared buffer while c's own is empty and
** reads are small, else c's buffer (len 0: no room). */
static void readroom(Tcp *c, uv_buf_t *ub) {
  tsk_Sched *S = SCHED(c);
  size_t avail = 0;
  char *p;
  if (tsk_buf_len(&c->buf) == 0 && !c->bulk &&
      (S->rbuf != NULL || (S->rbuf = (char *)malloc(TSK_RBUF)) != NULL)) {
    ub->base = S->rbuf;  /* readdone hands over or copies what came, at once */
    ub->len = TSK_RBUF;
    return;
  }
  p = tsk_buf_reserve(&c->buf, TCP_MINREAD, &avail);
  ub->base = p;
  ub->len = p ? avail : 0;
}

/* Should reading go on with what is buffered now? */
static int wantmore(Tcp *c) {
  size_t n = tsk_buf_len(&c->buf);
  if (n < TCP_HIGHWATER) return 1;
  return c->readers.head != NULL && n < tsk_recv_need(&c->rpat);
}

static void startread(Tcp *c) {
  if (c->reading || c->rerr != 0 || c->listening || c->io.closing)
    return;
  if (!wantmore(c)) return;
  c->reading = 1;
  repoll(c);
}

static void stopread(Tcp *c) {
  c->reading = 0;
  repoll(c);
}

/* Wake the head reader if the buffer now settles its receive. */
static void pokereader(Tcp *c) {
  size_t len, take;
  if (c->readers.head == NULL) return;
  if (c->rerr != 0 ||
      tsk_recv_match(&c->rpat, tsk_buf_ptr(&c->buf), tsk_buf_len(&c->buf), 0,
                     &len, &take) != TSK_MATCH_MORE)
    wakehead(&c->readers);
}

static int recvk(lua_State *L, int status, lua_KContext ctx);
static void recvdone(Tcp *c, size_t take);

/* The head reader blocked on c->rpat, or NULL: the head of the readers
** while it waits in a receive it began as the head (recvtry's ctx bit 0;
** the others wait for their turn). Woken, it is out of the queue. */
static tsk_Tasklet *headreader(Tcp *c) {
  tsk_Tasklet *t = c->readers.head;
  return t != NULL && t->status == TSK_BLOCKED && t->wk == recvk && (t->wctx & 1) ? t : NULL;
}

/* n bytes at p (the shared buffer; c's own is empty) settle the receive
** its blocked head reader waits in? Then hand it the count of bytes
** taken and the result string, and return that count; else 0. */
static size_t deliver(Tcp *c, const char *p, size_t n) {
  tsk_Tasklet *t = headreader(c);
  lua_State *L;
  const char *prefix;
  size_t len, take, plen = 0;
  if (t == NULL || tsk_recv_match(&c->rpat, p, n, 0, &len, &take) != TSK_MATCH_DONE)
    return 0;
  L = t->L;
  if (!lua_checkstack(L, 4)) return 0;
  /* its frame: box, pattern, prefix (receiveany has none) */
  prefix = c->rpat.kind == TSK_RECV_ANY ? NULL : lua_tolstring(t->wL, 3, &plen);
  lua_pushinteger(L, (lua_Integer)take);
  tsk_recv_push(L, &c->rpat, prefix, plen, p, len);
  tsk_wake(t, TSK_WDONE, L, 2);
  return take;
}

/* nread bytes (or UV_EOF, or an error) came into ub from the kernel. */
static void readdone(Tcp *c, ssize_t nread, const uv_buf_t *ub) {
  if (nread > 0) SCHED(c)->bytesin += (uint64_t)nread;
  if (nread > 0 && ub->base == SCHED(c)->rbuf) {
    size_t take = deliver(c, ub->base, (size_t)nread);
    c->bulk = nread >= TCP_BULK;
    if ((size_t)nread > take &&
        !tsk_buf_append(&c->buf, ub->base + take, (size_t)nread - take))
      nread = UV_ENOBUFS;  /* as if there had been no room for it */
    else if (take > 0)
      recvdone(c, take);  /* as the receive itself would: the next reader's turn */
  }
  else if (nread > 0) {
    tsk_buf_commit(&c->buf, (size_t)nread);
    if (nread < TCP_SMALL) c->bulk = 0;
  }
  if (nread < 0) {
    c->rerr = (int16_t)nread;
    c->reading = 0;
  }
  pokereader(c);
  if (c->reading && !wantmore(c)) c->reading = 0;
  tsk_watch_fire(c->watchers);
}

/* The descriptor is readable (or has an error): one read, as libuv's
** streams do; the poll is level-triggered, so what is left comes next. */
static void readready(Tcp *c) {
  uv_buf_t ub;
  ssize_t n;
  c->kready = 0;
  readroom(c, &ub);
  if (ub.len == 0) n = UV_ENOBUFS;
  else {
    do n = read(block_fd(c), ub.base, ub.len); while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) n = n == 0 ? UV_EOF : -errno;
  }
  readdone(c, n, &ub);
}

/* A receive that may not wait (timeout 0, or its time is up) asks the
** kernel itself, as LuaSocket's recv does, instead of seeing only what the
** loop read ahead: a script polling with settimeout(0) in the main chunk
** never runs the loop. Reads until the kernel has nothing more, the read
** side ends, or the buffer reaches the high-water mark. The poll is level-
** triggered, so the loop's read later just finds less (or EAGAIN). */
static void pullnow(Tcp *c, size_t upto) {
  int fd = block_fd(c);
  c->kready = 0;  /* (what it read, or found gone, the kernel says next) */
  if (c->rerr != 0 || fd < 0 || c->io.closing) return;
  while (tsk_buf_len(&c->buf) < upto) {
    size_t avail = 0;
    ssize_t n;
    char *p = tsk_buf_reserve(&c->buf, TCP_MINREAD, &avail);
    if (p == NULL) return;
    do n = read(fd, p, avail); while (n < 0 && errno == EINTR);
    if (n > 0) {  /* read on after a short read too, as LuaSocket's recv */
      tsk_buf_commit(&c->buf, (size_t)n);  /* loop does: a close queued */
      SCHED(c)->bytesin += (uint64_t)n;        /* behind the bytes is seen now */
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    c->rerr = n == 0 ? UV_EOF : -errno;
    stopread(c);
    return;
  }
}

/* --- Lua side helpers ------------------------------------------------- */

/* Set the class of box b at idx to its kind's class for role. */
static void setrole(lua_State *L, int idx, Box *b, int role) {
  b->role = role;
  tsk_class_set(L, tsk_upsched(L), idx, role == R_MASTER ? b->k->master
                        : role == R_CLIENT ? b->k->client : b->k->server);
}

static Box *newbox(lua_State *L, int role, int family, const Kind *k) {
  Box *b = (Box *)lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  b->k = k;
  tsk_timeout_init(&b->tm, -1, -1);
  b->birthday = tsk_now();
  b->maxline = TCP_MAXLINE;
  b->family = family;
  setrole(L, -1, b, role);
  return b;
}

/* The seconds the next wait may last; 0: fail with "timeout" now. */
static double waittime(Box *b) { return tsk_timeout_left(&b->tm); }

/* Make b's block for family if it has none (0 or a uv error). */
static int ensureblock(lua_State *L, Box *b, int family) {
  int r;
  if (b->c != NULL) return 0;
  r = block_new(tsk_upsched(L), family, -1, 0, &b->c);
  if (r == 0) b->family = family;
  return r;
}

/* --- what LuaSocket's buffer keeps ------------------------------------ */

/* LuaSocket's object keeps its buffer when it lets go of its descriptor
** (close, setfd): its receives go on returning those bytes, then say
** "closed", and setfd(fd) puts them in front of fd's. Here they are what
** LuaSocket's buffer would hold (LEFTOVER), kept as a string in a table
** with weak keys, the box its key, until they are used. */
static const char heldkey = 0;

/* Push the table of held bytes and return 1; or, unless make, push
** nothing and return 0 if there is none. */
static int pushheldtable(lua_State *L, int make) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &heldkey) == LUA_TTABLE) return 1;
  lua_pop(L, 1);
  if (!make) return 0;
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &heldkey);
  return 1;
}

/* Set the bytes held for the box at 1 (NULL: none). */
static void setheld(lua_State *L, const char *p, size_t n) {
  if (!pushheldtable(L, p != NULL)) return;
  lua_pushvalue(L, 1);
  if (p != NULL) lua_pushlstring(L, p, n);
  else lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* Push the bytes held for the box at 1 and return their count; 0 (and
** nothing pushed) if there are none. */
static size_t pushheld(lua_State *L) {
  size_t n = 0;
  if (!pushheldtable(L, 0)) return 0;
  lua_pushvalue(L, 1);
  if (lua_rawget(L, -2) == LUA_TSTRING) lua_tolstring(L, -1, &n);
  if (n == 0) {
    lua_pop(L, 2);
    return 0;
  }
  lua_remove(L, -2);
  return n;
}

/* The box b at 1 lets go of its block: keep what LuaSocket's buffer would
** hold. */
static void hold(lua_State *L, Box *b) {
  Tcp *c = b->c;
  size_t n;
  if (c == NULL) return;
  n = tsk_buf_len(&c->buf);
  if (LEFTOVER(c) < n) n = LEFTOVER(c);
  if (n > 0) setheld(L, tsk_buf_ptr(&c->buf), n);
}

/* The box b at 1 takes block c: what it held goes in front, as what
** LuaSocket's buffer holds. */
static void unhold(lua_State *L, Tcp *c) {
  size_t n = pushheld(L);
  if (n == 0) return;
  /* (no memory for them: they are dropped, as the block's own reads
  ** would be; kept held they would come after the block's bytes) */
  if (tsk_buf_append(&c->buf, lua_tostring(L, -1), n)) LEFTOVER(c) = (uint32_t)n;
  lua_pop(L, 1);
  setheld(L, NULL, 0);
}

/* --- receive ---------------------------------------------------------- */

static int recvtry(lua_State *L, Box *b, tsk_Recv *r, int head);

/* [-0, +3] a receive's results for the len bytes at p, the prefix
** (argument 3) in front: data, nil, nil; or with msg, the failure: nil,
** msg, partial. */
static int recvresult(lua_State *L, const tsk_Recv *r, const char *msg,
                      const char *p, size_t len) {
  size_t plen = 0;
  const char *prefix = lua_tolstring(L, 3, &plen);
  if (msg != NULL) {
    lua_pushnil(L);
    lua_pushstring(L, msg);
  }
  tsk_recv_push(L, r, prefix, plen, p, len);
  if (msg == NULL) {
    lua_pushnil(L);
    lua_pushnil(L);
  }
  return 3;
}

/* [-0, +3] the failure: nil, msg, prefix..partial, consuming the
** partial (len bytes of the buffer). */
static int recvfail(lua_State *L, Box *b, const tsk_Recv *r, const char *msg,
                    size_t len) {
  Tcp *c = b->c;
  if (c == NULL) return recvresult(L, r, msg, NULL, 0);
  recvresult(L, r, msg, tsk_buf_ptr(&c->buf), len);
  tsk_buf_consume(&c->buf, len);
  b->received += (double)len;
  return 3;
}

/* Receive r on b, which has no block (args: 1 box, 2 pattern, 3 prefix or
** nil): from the bytes it held, as LuaSocket's receive takes from its
** buffer, the end ("closed") coming after them. */
static int recvheld(lua_State *L, Box *b, tsk_Recv *r) {
  size_t n = pushheld(L), len, take;
  const char *p;
  int m;
  if (n == 0) return recvfail(L, b, r, "closed", 0);
  p = lua_tostring(L, -1);  /* (stays below the results: p stays valid) */
  m = tsk_recv_match(r, p, n, 1, &len, &take);
  if (m != TSK_MATCH_DONE) take = len;
  recvresult(L, r, m == TSK_MATCH_DONE ? NULL
                   : m == TSK_MATCH_TOOLONG ? "line too long" : "closed", p, len);
  b->received += (double)take;
  if (take < n) setheld(L, p + take, n - take);
  else setheld(L, NULL, 0);
  return 3;
}

/* LuaSocket's receive takes from the kernel up to 8 KiB at a time into
** its own buffer (BUF_SIZE), and only when that buffer is empty. */
#define LS_BUFSIZE 8192

/* A receive took take bytes: the next reader's turn, and reading again if
** the high-water mark had paused it. LEFTOVER becomes what LuaSocket's
** buffer would hold now: the kernel had at least what this one has
** buffered, so each refill LuaSocket's receive made was a full 8 KiB as
** far as that goes (dirty(), and what a close or another object's poll
** would find in the kernel, follow). */
static void recvdone(Tcp *c, size_t take) {
  size_t after, vb;
  if (c == NULL) return;
  after = tsk_buf_len(&c->buf);
  vb = LEFTOVER(c);
  if (take <= vb)
    vb -= take;
  else {  /* the refills the rest of take needed */
    size_t need = take - vb;
    size_t filled = (need + LS_BUFSIZE - 1) / LS_BUFSIZE * LS_BUFSIZE;
    vb = (filled < need + after ? filled : need + after) - need;
  }
  LEFTOVER(c) = (uint32_t)(vb < after ? vb : after);
  if (after == 0 && !c->bulk && c->buf.size >= TSK_BUF_INIT)
    tsk_buf_free(&c->buf);  /* big reads ended: small ones use S->rbuf */
  if (c->readers.head != NULL) {
    wakehead(&c->readers);
    startread(c);  /* if the high-water mark had paused it */
  }
  refresh(c);
}

static void reader_cancel(tsk_Tasklet *t) {
  Tcp *c = (Tcp *)t->wobj;
  wakehead(&c->readers);  /* it may be the new head: let it look */
  refresh(c);
}

/* ctx: bit 0 set if the tasklet waited as the head reader (else for its
** turn); bit 1 set for receiveany (its max is argument 2). */
static int recvk(lua_State *L, int status, lua_KContext ctx) {
  Box *b = (Box *)lua_touserdata(L, 1);
  tsk_Tasklet *t = tsk_self(b->c != NULL ? SCHED(b->c) : tsk_upsched(L));
  tsk_Recv r;
  size_t plen = 0;
  (void)status;
  if (t->wresult == TSK_WDONE) {  /* deliver made the result: taken, data */
    b->received += (double)lua_tointeger(L, -2);
    lua_pushnil(L);
    lua_pushnil(L);
    return 3;
  }
  lua_settop(L, 3);
  if (ctx & 2) {
    r.kind = TSK_RECV_ANY;
    r.want = (size_t)lua_tointeger(L, 2);
    r.scanned = 0;
  }
  else {
    lua_tolstring(L, 3, &plen);
    tsk_recv_parse(L, 2, plen, b->maxline, &r);
  }
  if (b->c == NULL || t->wresult == TSK_WCLOSED)
    return recvfail(L, b, &r, "closed", 0);
  if (ctx & 1) r.scanned = b->c->rpat.scanned;
  if (t->wresult == TSK_WTIMEOUT) {
    size_t part = tsk_recv_partial(&r, tsk_buf_len(&b->c->buf));
    int n = recvfail(L, b, &r, "timeout", part);
    recvdone(b->c, part);
    return n;
  }
  return recvtry(L, b, &r, (int)(ctx & 1));
}

/*
** Receive r on b (args: 1 box, 2 pattern, 3 prefix or nil). head: the
** caller was the head reader and keeps the first place if it must wait.
*/
static int recvtry(lua_State *L, Box *b, tsk_Recv *r, int head) {
  Tcp *c = b->c;
  tsk_Tasklet *t;
  size_t len, take;
  double left;
  int m;
  if (c == NULL) return recvheld(L, b, r);
  if (c->cstate != C_CONNECTED && c->cstate != C_NONE && (m = takeerror(c)) != 0)
    return recvfail(L, b, r, tsk_sock_strerror(m), 0);
  left = waittime(b);
  if (head || c->readers.head == NULL) {
    if (c->kready)  /* the poll saw bytes while nobody received: one read */
      pullnow(c, tsk_buf_len(&c->buf) + 1);  /* now, as the loop's would be */
    if (tsk_buf_len(&c->buf) == 0 && c->rerr == 0)  /* the usual wait */
      m = TSK_MATCH_MORE, len = take = 0;
    else
      m = tsk_recv_match(r, tsk_buf_ptr(&c->buf), tsk_buf_len(&c->buf),
                         c->rerr != 0, &len, &take);
    if (c->rerr == UV_EOF && c->shutrd && (m != TSK_MATCH_DONE || r->kind == TSK_RECV_ALL)) {
      /* after our shutdown("receive") the kernel says end while its queue
      ** is empty, but Linux still queues what the peer sends: ask again,
      ** as each recv of LuaSocket's does (a peer's end is final) */
      c->rerr = 0;
      pullnow(c, tsk_buf_len(&c->buf) + TCP_HIGHWATER);
      m = tsk_recv_match(r, tsk_buf_ptr(&c->buf), tsk_buf_len(&c->buf),
                         c->rerr != 0, &len, &take);
    }
    while (m == TSK_MATCH_MORE && left == 0 && c->rerr == 0) {
      /* as far as the pattern needs, as LuaSocket's recv loop goes, a
      ** read-ahead's worth at a time while the kernel has more */
      size_t had = tsk_buf_len(&c->buf);
      pullnow(c, had + TCP_HIGHWATER);
      m = tsk_recv_match(r, tsk_buf_ptr(&c->buf), tsk_buf_len(&c->buf),
                         c->rerr != 0, &len, &take);
      if (tsk_buf_len(&c->buf) < had + TCP_HIGHWATER) break;  /* drained */
    }
    /* "*a" succeeds only at the peer's clean close: after a reset (or a
    ** read error) what came is the partial result of a failure, as in
    ** LuaSocket, not a complete transfer */
    if (m == TSK_MATCH_DONE && r->kind == TSK_RECV_ALL && c->rerr != UV_EOF)
      m = TSK_MATCH_FAIL;
    if (m == TSK_MATCH_DONE) {
      recvresult(L, r, NULL, tsk_buf_ptr(&c->buf), len);
      tsk_buf_consume(&c->buf, take);
      b->received += (double)take;
      recvdone(c, take);
      return 3;
    }
    if (m != TSK_MATCH_MORE) {
      int n = recvfail(L, b, r, m == TSK_MATCH_TOOLONG ? "line too long"
                                : tsk_sock_strerror(c->rerr), len);
      recvdone(c, len);
      return n;
    }
  }
  if (left == 0) {
    size_t part = c->readers.head == NULL || head ? tsk_recv_partial(r, tsk_buf_len(&c->buf)) : 0;
    int n = recvfail(L, b, r, "timeout", part);
    recvdone(c, part);
    return n;
  }
  t = tsk_self(SCHED(c));
  tsk_checkblock(L, SCHED(c));
  head = head || c->readers.head == NULL;
  if (head) {
    c->rpat = *r;
    tsk_queue_pushfront(&c->readers, t);
    startread(c);
  }
  else
    tsk_queue_push(&c->readers, t);
  refresh(c);
  t->won = TSK_ON_SOCKET;
  t->wobj = c;
  t->wcancel = reader_cancel;
  return tsk_wait(L, t, left, (lua_KContext)(head | (r->kind == TSK_RECV_ANY ? 2 : 0)),
                  recvk);
}

/* sock:receive([pattern[, prefix]]) */
static int meth_receive(lua_State *L) {
  Box *b = (Box *)checkbox(L, R_CLIENT);
  size_t plen;
  tsk_Recv r;
  luaL_optlstring(L, 3, "", &plen);
  tsk_timeout_markstart(&b->tm);
  lua_settop(L, 3);
  if (!tsk_recv_parse(L, 2, plen, b->maxline, &r)) {
    lua_pushvalue(L, 3);
    lua_pushnil(L);
    lua_pushnil(L);
    return 3;
  }
  return recvtry(L, b, &r, 0);
}

/* sock:receiveany(max): 1..max bytes as soon as any are there. */
static int meth_receiveany(lua_State *L) {
  Box *b = (Box *)checkbox(L, R_CLIENT);
  int isint;
  lua_Integer max = lua_tointegerx(L, 2, &isint);
  tsk_Recv r;
  if (!isint) max = luaL_checkinteger(L, 2);  /* raises, as it says why */
  luaL_argcheck(L, max > 0, 2, "bad max argument");
  tsk_timeout_markstart(&b->tm);
  r.kind = TSK_RECV_ANY;
  r.want = max > TSK_BUF_MAX ? TSK_BUF_MAX : (size_t)max;
  r.scanned = 0;
  if (lua_gettop(L) != 2 || (lua_Integer)r.want != max) {  /* frame: box, want */
    lua_settop(L, 1);
    lua_pushinteger(L, (lua_Integer)r.want);
  }
  lua_pushnil(L);  /* no prefix */
  return recvtry(L, b, &r, 0);
}

/* --- send ------------------------------------------------------------- */

/* LuaSocket's index arithmetic: [start, end] of data (1-based). */
static void sendrange(lua_State *L, size_t size, long *start, long *end) {
  long i, j;
  if (lua_gettop(L) < 3 ||
      (lua_type(L, 3) <= LUA_TNIL && lua_type(L, 4) <= LUA_TNIL)) {  /* the whole */
    *start = 1;
    *end = (long)size;
    return;
  }
  i = tsk_num2long(luaL_optnumber(L, 3, 1));
  j = tsk_num2long(luaL_optnumber(L, 4, -1));
  if (i < 0) i = (long)size + i + 1;
  if (j < 0) j = (long)size + j + 1;
  if (i < 1) i = 1;
  if (j > (long)size) j = (long)size;
  *start = i;
  *end = j;
}

static int sendresult(lua_State *L, Box *b, long start, long end, size_t sent, int err) {
  b->sent += (double)sent;
  if (err == 0) {
    lua_pushnumber(L, (lua_Number)end);
    lua_pushnil(L);
    lua_pushnil(L);
  }
  else {
    lua_pushnil(L);
    lua_pushstring(L, tsk_sock_strerror(err));
    lua_pushnumber(L, (lua_Number)(start - 1 + (long)sent));
  }
  return 3;
}

static void writer_cancel(tsk_Tasklet *t) {
  Tcp *c = (Tcp *)t->wobj;
  if (c->wowner == t) c->wowner = NULL;
  if (!c->busy) wakehead(&c->writers);
  refresh(c);
}

/* The request in flight finished: wake its owner and the next writer. */
static void reqdone(Tcp *c, int status) {
  tsk_Tasklet *t = c->wowner;
  c->busy = B_NONE;
  c->werr = status;
  c->wowner = NULL;
  if (t != NULL) tsk_wake(t, TSK_WOK, NULL, 0);
  wakehead(&c->writers);
  tsk_watch_fire(c->watchers);
  refresh(c);
}

/* The write in flight is done (status 0) or failed. */
static void writedone(Tcp *c, int status) {
  if (!SCHED(c)->closing) tsk_unanchor(SCHED(c), c->req->anchor);  /* the string */
  reqdone(c, status);
  if (c->lingering) lingerdone(c);
}

/* The descriptor is writable (or has an error): on with the write in
** flight, one send(2) a time, as libuv's streams do. */
static void writeready(Tcp *c) {
  Req *req = c->req;
  ssize_t n;
  do n = send(block_fd(c), req->wbase, req->wlen, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
  if (n < 0) {
    writedone(c, -errno);
    return;
  }
  req->wbase += n;
  req->wlen -= (size_t)n;
  if (req->wlen == 0) writedone(c, 0);
}

static int sendtry(lua_State *L, Box *b, int turn);

/* ctx: -1 when waiting for a turn, else bytes sent before the rest went
** in flight. */
static int sendk(lua_State *L, int status, lua_KContext ctx) {
  Box *b = (Box *)lua_touserdata(L, 1);
  tsk_Tasklet *t = tsk_self(tsk_upsched(L));
  size_t size;
  long start, end;
  (void)status;
  lua_tolstring(L, 2, &size);
  sendrange(L, size, &start, &end);
  if (ctx < 0) {  /* a turn to write */
    if (t->wresult == TSK_WOK && b->c != NULL) return sendtry(L, b, 1);
    return sendresult(L, b, start, end, 0, b->c ? t->wresult : TSK_WCLOSED);
  }
  if ((t->wresult == TSK_WOK || t->wresult == TSK_WTIMEOUT) && b->c != NULL) {
    Tcp *c = b->c;
    size_t len = (size_t)(end - start + 1);
    int err;
    if (t->wresult == TSK_WTIMEOUT && c->busy == B_WRITE) {
      /* its own write (the next writer waits for this one to run): it
      ** stops at the deadline, as LuaSocket's send does; what the kernel
      ** has not taken is not sent */
      size_t rest = c->req->wlen;
      SCHED(c)->bytesout -= rest;
      writedone(c, 0);
      repoll(c);
      return sendresult(L, b, start, end, len - rest, TSK_WTIMEOUT);
    }
    /* done: woken by its end, or it ended in the turn its time ran out */
    err = c->werr;
    if (err == 0) return sendresult(L, b, start, end, len, 0);
    /* what the kernel took, as LuaSocket counts: all but what the write
    ** in flight had left (the next writer runs after this one) */
    return sendresult(L, b, start, end, len - c->req->wlen, err);
  }
  return sendresult(L, b, start, end, (size_t)ctx, TSK_WCLOSED);
}

/*
** A send that may not wait while the connect is watched (busy B_CONNECT).
** The kernel may be connected already (on loopback a connect completes at
** once), and then LuaSocket's send(2) goes out; so does this one, as
** nothing is queued. While the connect is in progress the kernel says
** EAGAIN ("timeout"); after a failed one whose error was taken, EPIPE
** ("closed"). An error it reports now is the connect's, taken from the
** kernel here: connectready will read none (C_STOLEN).
*/
static int sendnow(lua_State *L, Box *b, const char *data, long start, long end) {
  Tcp *c = b->c;
  ssize_t n;
  do n = send(block_fd(c), data + start - 1, (size_t)(end - start + 1),
              MSG_DONTWAIT | MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n >= 0) {
    SCHED(c)->bytesout += (uint64_t)n;
    return sendresult(L, b, start, end, (size_t)n, n == end - start + 1 ? 0 : TSK_WTIMEOUT);
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK)
    return sendresult(L, b, start, end, 0, TSK_WTIMEOUT);
  if (errno != EPIPE && c->cstate == C_PENDING) {
    c->cstate = C_STOLEN;
    c->werr = UV_ECONNABORTED;  /* reported here: taken */
  }
  return sendresult(L, b, start, end, 0, -errno);
}

static int sendtry(lua_State *L, Box *b, int turn) {
  Tcp *c = b->c;
  size_t size, len, sent = 0;
  const char *data = lua_tolstring(L, 2, &size);
  long start, end;
  tsk_Tasklet *t;
  double left;
  ssize_t n;
  int r;
  Req *req;
  sendrange(L, size, &start, &end);
  if (start > end) return sendresult(L, b, start, start - 1, 0, 0);
  if (c == NULL) return sendresult(L, b, start, end, 0, TSK_WCLOSED);
  if (c->cstate != C_CONNECTED && c->cstate != C_NONE && (r = takeerror(c)) != 0)
    return sendresult(L, b, start, end, 0, r);
  left = waittime(b);
  if (c->busy || (c->writers.head != NULL && !turn)) {  /* wait for a turn */
    if (left == 0 && c->busy == B_CONNECT && c->writers.head == NULL)
      return sendnow(L, b, data, start, end);
    if (left == 0) return sendresult(L, b, start, end, 0, TSK_WTIMEOUT);
    t = tsk_self(SCHED(c));
    tsk_checkblock(L, SCHED(c));
    if (turn) tsk_queue_pushfront(&c->writers, t);
    else tsk_queue_push(&c->writers, t);
    refresh(c);
    t->won = TSK_ON_SOCKET;
    t->wobj = c;
    t->wcancel = writer_cancel;
    return tsk_wait(L, t, left, -1, sendk);
  }
  len = (size_t)(end - start + 1);
  do n = send(block_fd(c), data + start - 1, len, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n >= 0) sent = (size_t)n;
  else if (errno != EAGAIN && errno != EWOULDBLOCK)
    return sendresult(L, b, start, end, 0, -errno);
  SCHED(c)->bytesout += sent;
  if (sent == len) {
    if (turn) wakehead(&c->writers);
    return sendresult(L, b, start, end, sent, 0);
  }
  if (left == 0) return sendresult(L, b, start, end, sent, TSK_WTIMEOUT);
  tsk_checkblock(L, SCHED(c));
  if ((req = getreq(c)) == NULL) return sendresult(L, b, start, end, sent, UV_ENOMEM);
  lua_pushvalue(L, 2);  /* the string lives until the write is done */
  req->anchor = tsk_anchor(L, SCHED(c));
  req->wbase = data + start - 1 + sent;
  req->wlen = len - sent;
  SCHED(c)->bytesout += req->wlen;
  c->busy = B_WRITE;
  repoll(c);
  t = tsk_self(SCHED(c));
  c->wowner = t;
  refresh(c);
  t->won = TSK_ON_SOCKET;
  t->wobj = c;
  t->wcancel = writer_cancel;
  return tsk_wait(L, t, left, (lua_KContext)sent, sendk);
}

/* sock:send(data[, i[, j]]) */
static int meth_send(lua_State *L) {
  Box *b = (Box *)checkbox(L, R_CLIENT);
  luaL_checkstring(L, 2);
  tsk_timeout_markstart(&b->tm);
  return sendtry(L, b, 0);  /* absent i and j read as nil */
}

/* --- connect ---------------------------------------------------------- */

/* The connect in flight is over: the descriptor is writable (or has an
** error), and SO_ERROR says how it went, unless it failed at once. */
static void connectready(Tcp *c) {
  int status = c->delayed ? c->werr : takesoerror(c);
  c->delayed = 0;
  if (c->cstate == C_STOLEN || c->cstate == C_LIMBO) {
    /* the outcome was reported already; SO_ERROR was read cleared */
    c->cstate = c->cstate == C_STOLEN ? C_FAILED : C_NONE;
    status = c->werr;
  }
  else if (c->cstate != C_CONNECTED || status != 0)
    c->cstate = status == 0 ? C_DONE : C_FAILED;
  reqdone(c, status);
}

/* Start connecting c to sa: 0, and connectready reports the outcome, or a
** negative errno. As libuv does, a connection refused at once is reported
** by the loop. */
static int startconnect(Tcp *c, const struct sockaddr *sa, socklen_t len) {
  int r;
  do r = connect(block_fd(c), sa, len); while (r != 0 && errno == EINTR);
  if (r != 0 && errno != EINPROGRESS) {
    if (errno != ECONNREFUSED) return -errno;
    c->werr = (int16_t)-errno;
    c->delayed = 1;
  }
  c->busy = B_CONNECT;
  c->cstate = C_PENDING;
  repoll(c);
  return 0;
}

/* The loop's poll of a connected (or connecting) block's descriptor. */
static void io_cb(tsk_Io *io, int status, int events) {
  Tcp *c = BLOCK(io);
  if (status < 0)  /* POLLERR: the poller stopped it; each side takes its */
    events = UV_READABLE | UV_WRITABLE;  /* error itself, as it reads or writes */
  if (events & UV_WRITABLE) {
    if (c->busy == B_CONNECT) connectready(c);
    else if (c->busy == B_WRITE) {
      writeready(c);
      if (io->closing) return;  /* it lingered for that */
    }
    else if (c->wwatch) {  /* room in the kernel: its select looks again */
      c->wwatch = 0;
      tsk_watch_fire(c->watchers);
    }
  }
  if ((events & UV_READABLE) && c->reading) {
    if (c->readers.head == NULL) {
      /* nobody receives: what came stays in the kernel, as under LuaSocket
      ** (a descriptor handed on, a wrap, a close's reset find it there);
      ** a select waiting for it looks again, else polling stops here (it
      ** went on after the last receive: that spares a stop and a start
      ** between two receives, the usual case) */
      c->kready = 1;
      if (c->rwatch) {
        c->rwatch = 0;
        tsk_watch_fire(c->watchers);
      }
      else
        c->reading = 0;
      repoll(c);
      return;
    }
    readready(c);
    /* the read side ended: its tasklet usually closes the socket in this
    ** turn, which stops the poll anyway; else the next (level-triggered)
    ** event finds it not reading and stops it */
    if (c->rerr != 0 && c->busy == B_NONE) return;
  }
  repoll(c);
}

/* A TCP connect in flight that the kernel has refused: take its error
** (SO_ERROR) as a LuaSocket script would, before the loop does. Returns the
** error (negative) and moves c to C_STOLEN, or 0 if it has not failed. */
static int steal(Tcp *c) {
  int err;
  if (c->family == AF_UNIX || c->cstate != C_PENDING || c->wowner != NULL)
    return 0;
  if ((err = takesoerror(c)) == 0) return 0;
  c->cstate = C_STOLEN;
  c->werr = (int16_t)err;
  return err;
}

/* The error a failed connect left for the next call to take, as the
** kernel's SO_ERROR is taken by the first recv, send, connect or
** getoption("error"): once, then 0. */
static int takeerror(Tcp *c) {
  int err = steal(c);
  if (err == 0 && (c->cstate == C_FAILED || c->cstate == C_STOLEN)) err = c->werr;
  if (err == 0 || err == UV_ECONNABORTED) return 0;
  c->werr = UV_ECONNABORTED;
  return err;
}

/* connect(2) on c's descriptor, as LuaSocket calls it when a script asks
** again: the loop learned the outcome with getsockopt, so the kernel still
** holds the socket as "connecting". Returns 0 or a negative errno. With
** sa NULL: the peer's address if connected, else AF_UNSPEC (forget the
** failed attempt, so the next one starts afresh). Not for Unix domain. */
static int rawconnect(Tcp *c, const struct sockaddr *sa, socklen_t len) {
  struct sockaddr_storage ss;
  int fd = block_fd(c), r;
  if (c->family == AF_UNIX || fd < 0) return 0;
  if (sa == NULL) {
    len = (socklen_t)sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0) {
      memset(&ss, 0, sizeof ss);
      ss.ss_family = AF_UNSPEC;
      len = (socklen_t)sizeof ss;
    }
    sa = (const struct sockaddr *)&ss;
  }
  do r = connect(fd, sa, len); while (r != 0 && errno == EINTR);
  return r == 0 ? 0 : -errno;
}

/* [-0, +(1|2)] The result of a finished connect attempt. */
static int connected(lua_State *L, Tcp *c) {
  if (c->cstate == C_DONE) {
    c->cstate = C_CONNECTED;
    lua_pushnumber(L, 1);
    return 1;
  }
  c->cstate = c->cstate == C_STOLEN ? C_LIMBO : C_NONE;
  return tsk_sock_fail(L, c->werr);
}

static int connectnext(lua_State *L, Box *b, int i, int lasterr);

/* A connect that waited failed. As in LuaSocket, a socket whose family
** was not chosen before it keeps none, and its next connect makes a new
** descriptor (LuaSocket records the family only once a connect succeeds
** or may not wait). */
static int connectfail(lua_State *L, Box *b, int err) {
  if (b->trial) {
    b->family = AF_UNSPEC;
    b->renew = 1;
    b->trial = 0;
  }
  return tsk_sock_fail(L, err);
}

/* Waiting for an attempt: ctx is the index of its address, -1 when it
** was started by an earlier call. */
static int connectk(lua_State *L, int status, lua_KContext ctx) {
  Box *b = (Box *)lua_touserdata(L, 1);
  tsk_Tasklet *t = tsk_self(tsk_upsched(L));
  (void)status;
  if (b->c == NULL || t->wresult == TSK_WCLOSED) return tsk_sock_fail(L, TSK_WCLOSED);
  if (t->wresult == TSK_WTIMEOUT) return connectfail(L, b, TSK_WTIMEOUT);
  if (t->wresult < 0) return tsk_sock_fail(L, t->wresult);
  if (b->c->cstate == C_FAILED && ctx >= 0) {
    b->c->cstate = C_NONE;
    return connectnext(L, b, (int)ctx + 1, b->c->werr);
  }
  if (b->c->cstate == C_DONE) setrole(L, 1, b, R_CLIENT);  /* unix */
  return connected(L, b->c);
}

static int waitconnect(lua_State *L, Box *b, int i) {
  Tcp *c = b->c;
  tsk_Tasklet *t = tsk_self(SCHED(c));
  double left = waittime(b);
  if (left == 0) {  /* may not wait: LuaSocket records the family */
    b->trial = 0;
    return tsk_sock_fail(L, TSK_WTIMEOUT);
  }
  tsk_checkblock(L, SCHED(c));
  c->wowner = t;
  refresh(c);
  t->won = TSK_ON_SOCKET;
  t->wobj = c;
  t->wcancel = writer_cancel;
  return tsk_wait(L, t, left, (lua_KContext)i, connectk);
}

/* Try the i-th address of the list at index 4 (and the next ones). */
static int connectnext(lua_State *L, Box *b, int i, int lasterr) {
  const struct addrinfo *ai = tsk_addr_list(L, 4);
  int k, r;
  for (k = 0; ai != NULL && k < i; k++) ai = ai->ai_next;
  for (; ai != NULL; ai = ai->ai_next, i++) {
    tsk_timeout_markstart(&b->tm);
    if (b->c != NULL && (b->c->family != ai->ai_family || b->renew)) box_close(b);
    b->renew = 0;
    if ((r = ensureblock(L, b, ai->ai_family)) != 0 ||
        (r = startconnect(b->c, ai->ai_addr, ai->ai_addrlen)) != 0) {
      lasterr = r;
      continue;
    }
    return waitconnect(L, b, i);
  }
  return connectfail(L, b, lasterr ? lasterr : UV_EAI_NONAME);
}

static int resolvedk(lua_State *L, int status, lua_KContext ctx) {
  Box *b = (Box *)lua_touserdata(L, 1);
  tsk_Tasklet *t = tsk_self(tsk_upsched(L));
  (void)status; (void)ctx;
  if (t->wresult != 0) return tsk_sock_fail(L, t->wresult);
  if (b->c != NULL && b->c->cstate == C_CONNECTED) {
    /* LuaSocket asks the kernel: 1 (its first connect after one that
    ** completed by waiting) or "already connected" */
    const struct addrinfo *ai = tsk_addr_list(L, 4);
    int r = ai != NULL ? rawconnect(b->c, ai->ai_addr, ai->ai_addrlen) : UV_EISCONN;
    if (r != 0) return tsk_sock_fail(L, r);
    lua_pushnumber(L, 1);
    return 1;
  }
  if (b->c != NULL && b->c->cstate == C_LIMBO) {
    /* the watch still waits for the descriptor to be writable and then
    ** reads SO_ERROR: connect(2) again, and it reports this attempt */
    const struct addrinfo *ai = tsk_addr_list(L, 4);
    int r = ai != NULL ? rawconnect(b->c, ai->ai_addr, ai->ai_addrlen) : UV_EAI_NONAME;
    if (r == 0) {
      b->c->cstate = C_CONNECTED;
      lua_pushnumber(L, 1);
      return 1;
    }
    if (r != -EINPROGRESS && r != -EAGAIN) return tsk_sock_fail(L, r);
    b->c->cstate = C_PENDING;
    return waitconnect(L, b, -1);
  }
  return connectnext(L, b, 0, 0);
}

/* sock:connect(host, port) */
static int meth_connect(lua_State *L) {
  Box *b = (Box *)checkbox(L, R_ANY);
  const char *host = luaL_checkstring(L, 2);
  const char *port = luaL_checkstring(L, 3);  /* a service, as LuaSocket */
  tsk_Sched *S = tsk_upsched(L);
  tsk_timeout_markstart(&b->tm);
  setrole(L, 1, b, R_CLIENT);  /* even if it fails, as LuaSocket */
  lua_settop(L, 3);
  if (b->c != NULL && !b->renew) {  /* (renew: a new descriptor, a new try) */
    switch (b->c->cstate) {
      case C_PENDING: {
        struct sockaddr_storage ss;
        socklen_t len = (socklen_t)sizeof ss;
        if (b->c->wowner != NULL) return tsk_sock_fail(L, UV_EALREADY);
        if (getpeername(block_fd(b->c), (struct sockaddr *)&ss, &len) == 0) {
          b->c->cstate = C_CONNECTED;  /* the kernel is done; the loop will be */
          rawconnect(b->c, NULL, 0);
          lua_pushnumber(L, 1);
          return 1;
        }
        /* still in progress: connect(2) says EALREADY, which LuaSocket
        ** returns at once, whatever the timeout; refused: the error, as
        ** below */
        if (steal(b->c) == 0) return tsk_sock_fail(L, UV_EALREADY);
      }
      /* fall through */
      case C_DONE: case C_FAILED: case C_STOLEN:
        rawconnect(b->c, NULL, 0);
        return connected(L, b->c);
      default: break;  /* C_CONNECTED: the kernel answers, once resolved */
    }
  }
  b->trial = b->family == AF_UNSPEC;
  return tsk_addr_resolve(L, S, host, port, b->family, SOCK_STREAM, 0, 0, resolvedk);
}

/* --- bind, listen, accept --------------------------------------------- */

/*
** After the lookup: try each address. ctx 1: the socket had no family when
** bind began (tcp(), or one whose connect failed). Then, as LuaSocket's
** inet_trybind, the first address and each one of another family get a new
** descriptor; a failure leaves the last one made, but no family (its
** getsockname says "unspec"), and the next bind or connect makes another.
*/
static int boundk(lua_State *L, int status, lua_KContext ctx) {
  Box *b = (Box *)lua_touserdata(L, 1);
  tsk_Tasklet *t = tsk_self(tsk_upsched(L));
  const struct addrinfo *ai;
  int r = UV_EAI_NONAME, current = ctx ? AF_UNSPEC : b->family;
  (void)status;
  if (t->wresult != 0) return tsk_sock_fail(L, t->wresult);
  for (ai = tsk_addr_list(L, 4); ai != NULL; ai = ai->ai_next) {
    if (current != ai->ai_family || b->c == NULL) {
      if (!ctx && b->c != NULL) continue;  /* tcp4/tcp6: its own family only */
      box_close(b);
      if ((r = ensureblock(L, b, ai->ai_family)) != 0) continue;
      current = ai->ai_family;
    }
    /* bind(2) itself: libuv's bind would set SO_REUSEADDR and defer
    ** "address already in use" to listen, unlike LuaSocket */
    if (bind(block_fd(b->c), ai->ai_addr, ai->ai_addrlen) == 0) {
      b->family = current;
      b->renew = 0;  /* a connect uses this descriptor */
      lua_pushnumber(L, 1);
      return 1;
    }
    r = -errno;
  }
  if (ctx) b->family = AF_UNSPEC;
  return tsk_sock_fail(L, r);
}

/* master:bind(host, port) */
static int meth_bind(lua_State *L) {
  Box *b = (Box *)checkbox(L, R_MASTER);
  const char *host = luaL_checkstring(L, 2);
  const char *port = luaL_checkstring(L, 3);  /* a service, as LuaSocket */
  lua_settop(L, 3);
  return tsk_addr_resolve(L, tsk_upsched(L), host, port, b->family, SOCK_STREAM, 1,
                          b->family == AF_UNSPEC, boundk);
}

/*
** A server accepts with accept(2) itself, as LuaSocket does, its block's
** poll watching for connections (lis_cb). libuv's uv_listen
** would accept ahead of any accept() call and, out of descriptors, accept
** and drop what LuaSocket leaves queued in the kernel (its "EMFILE
** trick"). The watch is started while anyone waits; an event that finds
** nobody waiting stops it (it is level-triggered: it would fire again).
*/
static void lis_cb(tsk_Io *io, int status, int events) {
  Tcp *c = BLOCK(io);
  (void)events;
  if (status < 0) c->rerr = (int16_t)status;
  else c->pending = 1;
  if (c->readers.head == NULL && c->watchers == NULL) tsk_io_poll(io, 0);
  wakehead(&c->readers);
  tsk_watch_fire(c->watchers);
}

/* Make c, whose descriptor listens, a server block: its io watches
** for connections from now on (a master's never polled before: it has
** not read, written or connected). */
static void startlisten(Tcp *c) {
  c->listening = 1;
  c->io.cb = lis_cb;
}

/* master:listen([backlog]) */
static int meth_listen(lua_State *L) {
  Box *b = (Box *)checkbox(L, R_MASTER);
  int backlog = tsk_num2int(luaL_optnumber(L, 2, 32));
  Tcp *c = b->c;
  if (c == NULL) return tsk_sock_fail(L, UV_EBADF);
  if (listen(block_fd(c), backlog) != 0) return tsk_sock_fail(L, -errno);
  startlisten(c);
  setrole(L, 1, b, R_SERVER);
  lua_pushnumber(L, 1);
  return 1;
}

static int accepttry(lua_State *L, Box *b, int head);

static int acceptk(lua_State *L, int status, lua_KContext ctx) {
  Box *b = (Box *)lua_touserdata(L, 1);
  tsk_Tasklet *t = tsk_self(tsk_upsched(L));
  (void)status;
  if (b->c == NULL || t->wresult == TSK_WCLOSED) return tsk_sock_fail(L, TSK_WCLOSED);
  if (t->wresult == TSK_WTIMEOUT) {
    wakehead(&b->c->readers);
    refresh(b->c);
    return tsk_sock_fail(L, TSK_WTIMEOUT);
  }
  return accepttry(L, b, (int)ctx);
}

/* [-0, +1] the client box of nc, a connection accepted on server b. */
static int adopt(lua_State *L, Box *b, Tcp *nc) {
  Tcp *c = b->c;
  Box *nb;
  nc->cstate = C_CONNECTED;
  nc->family = c->family;  /* an accepted socket's is its listener's */
  nb = newbox(L, R_CLIENT, nc->family, b->k);
  nb->c = nc;
  if (c->readers.head != NULL) wakehead(&c->readers);
  refresh(c);
  return 1;
}

/* accept(2) on c's descriptor now, without the loop: 0 and *out, or
** TSK_WTIMEOUT when nothing waits, or a negative uv error. */
static int acceptnow(Tcp *c, Tcp **out) {
  int fd, r;
  do fd = accept4(block_fd(c), NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  while (fd < 0 && errno == EINTR);
  if (fd < 0)
    return errno == EAGAIN || errno == EWOULDBLOCK ? TSK_WTIMEOUT : -errno;
  if ((r = block_new(SCHED(c), c->family, fd, 1, out)) != 0) close(fd);
  return r;
}

static int accepttry(lua_State *L, Box *b, int head) {
  Tcp *c = b->c, *nc = NULL;
  tsk_Tasklet *t;
  double left;
  int r;
  if (c == NULL) return tsk_sock_fail(L, TSK_WCLOSED);
  if (!c->listening) return tsk_sock_fail(L, UV_EINVAL);  /* no watch (setfd) */
  left = waittime(b);
  if (head || c->readers.head == NULL) {
    if (c->rerr != 0) {
      r = c->rerr;
      c->rerr = 0;
      return tsk_sock_fail(L, r);
    }
    /* the watch saw a connection, or the call may not wait (the loop,
    ** which would see one, may not have run): ask the kernel. An error
    ** (out of descriptors) leaves the connection queued, as in LuaSocket */
    if (c->pending || left == 0) {
      if ((r = acceptnow(c, &nc)) == 0) return adopt(L, b, nc);
      if (r != TSK_WTIMEOUT) return tsk_sock_fail(L, r);
      c->pending = 0;
    }
  }
  if (left == 0) return tsk_sock_fail(L, TSK_WTIMEOUT);
  t = tsk_self(SCHED(c));
  tsk_checkblock(L, SCHED(c));
  head = head || c->readers.head == NULL;
  if (head) tsk_queue_pushfront(&c->readers, t);
  else tsk_queue_push(&c->readers, t);
  refresh(c);
  t->won = TSK_ON_SOCKET;
  t->wobj = c;
  t->wcancel = reader_cancel;
  return tsk_wait(L, t, left, (lua_KContext)head, acceptk);
}

/* server:accept() */
static int meth_accept(lua_State *L) {
  Box *b = (Box *)checkbox(L, R_SERVER);
  tsk_timeout_markstart(&b->tm);
  lua_settop(L, 1);
  return accepttry(L, b, 0);
}

/* --- the rest --------------------------------------------------------- */

/* Close b, letting a write in flight finish (lingerclose).
** Closing with bytes unread makes the kernel reset the connection, not
** end it; under LuaSocket those are the bytes that came after its last
** receive (the ones before were read into its buffer): here, the ones
** read ahead beyond what that receive left (LEFTOVER(c)). Linger 0 makes
** close reset, and keeps lingerclose from delivering a write in flight,
** which the kernel's reset would drop too. */
static void box_closeflush(Box *b) {
  if (b->c != NULL && tsk_buf_len(&b->c->buf) > LEFTOVER(b->c)) {
    struct linger li;
    li.l_onoff = 1;
    li.l_linger = 0;
    setsockopt(block_fd(b->c), SOL_SOCKET, SO_LINGER, &li, (socklen_t)sizeof li);
  }
  if (b->c != NULL && lingerclose(b->c)) b->c = NULL;
  else box_close(b);
}

static int meth_close(lua_State *L) {
  Box *b = (Box *)checkbox(L, R_ANY);
  hold(L, b);
  box_closeflush(b);
  lua_pushnumber(L, 1);
  return 1;
}

static int meth_gc(lua_State *L) {
  Box *b = fastbox(L);
  if (b == NULL) b = (Box *)tsk_class_testgroup(L, STREAM, 1);
  if (b != NULL) box_closeflush(b);  /* (NULL: called by hand on something else) */
  return 0;
}

static int meth_shutdown(lua_State *L) {
  static const char *const how[] = {"receive", "send", "both", NULL};
  static const int shut[] = {SHUT_RD, SHUT_WR, SHUT_RDWR};
  Box *b = (Box *)checkbox(L, R_CLIENT);
  int i = luaL_checkoption(L, 2, "both", how);
  int fd = block_fd(b->c);
  if (fd >= 0 && shutdown(fd, shut[i]) == 0 && shut[i] != SHUT_WR) b->c->shutrd = 1;
  lua_pushnumber(L, 1);
  return 1;
}

static int meth_getfd(lua_State *L) {
  Box *b = (Box *)checkbox(L, R_ANY);
  lua_pushnumber(L, block_fd(b->c));
  return 1;
}

/*
** sock:setfd(fd): adopt the descriptor fd (the socket's own is closed
** first). setfd(-1) detaches the descriptor: it stays open, and the
** socket no longer owns it (closing the block leaves it open).
*/
/* setfd(fd) of either kind: b lets go of its descriptor (which stays open
** when fd < 0, as LuaSocket's does), keeping what LuaSocket's buffer would
** hold, and takes fd (family AF_UNSPEC: fd's own, as getsockname says). */
static int setfd(lua_State *L, Box *b, int family) {
  int fd = tsk_num2int(luaL_checknumber(L, 2));
  int old = block_fd(b->c);
  struct sockaddr_storage ss;
  socklen_t len = (socklen_t)sizeof ss;
  Tcp *c;
  if (old >= 0 && old == fd) return 0;
  if (fd < 0 && old >= 0) b->c->detached = 1;  /* left open */
  hold(L, b);
  box_close(b);
  if (fd < 0 || block_new(tsk_upsched(L), family, fd, 0, &c) != 0) return 0;
  unhold(L, c);
  if (family == AF_UNSPEC && getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
    c->family = b->family = (unsigned char)ss.ss_family;
  len = (socklen_t)sizeof ss;
  if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0) c->cstate = C_CONNECTED;
  if (b->role == R_SERVER) startlisten(c);  /* a server accepts from it */
  b->c = c;
  return 0;
}

static int meth_setfd(lua_State *L) {
  return setfd(L, (Box *)checkbox(L, R_ANY), AF_UNSPEC);
}

static int meth_dirty(lua_State *L) {
  Box *b = (Box *)checkbox(L, R_ANY);
  if (b->c == NULL) {  /* what it held, if anything */
    lua_pushboolean(L, pushheld(L) > 0);
    return 1;
  }
  lua_pushboolean(L, LEFTOVER(b->c) > 0 && tsk_buf_len(&b->c->buf) > 0);
  return 1;
}

static int meth_getstats(lua_State *L) {
  Box *b = (Box *)checkbox(L, R_CLIENT);
  lua_pushnumber(L, b->received);
  lua_pushnumber(L, b->sent);
  lua_pushnumber(L, tsk_now() - b->birthday);
  return 3;
}

static int meth_setstats(lua_State *L) {
  Box *b = (Box *)checkbox(L, R_CLIENT);
  /* LuaSocket keeps them as size_t, through a (long) cast */
  b->received = (double)(size_t)tsk_num2long(luaL_optnumber(L, 2, b->received));
  b->sent = (double)(size_t)tsk_num2long(luaL_optnumber(L, 3, b->sent));
  if (lua_isnumber(L, 4)) b->birthday = tsk_now() - lua_tonumber(L, 4);
  lua_pushnumber(L, 1);
  return 1;
}

static int meth_settimeout(lua_State *L) {
  Box *b = (Box *)checkbox(L, R_ANY);
  return tsk_timeout_meth_settimeout(L, &b->tm);
}

static int meth_gettimeout(lua_State *L) {
  Box *b = (Box *)checkbox(L, R_ANY);
  return tsk_timeout_meth_gettimeout(L, &b->tm);
}

static int addrof(lua_State *L, int peer) {
  Box *b = (Box *)checkbox(L, R_ANY);
  struct sockaddr_storage ss;
  socklen_t len = (socklen_t)sizeof ss;
  int r;
  if (b->c == NULL) return tsk_sock_fail(L, UV_EBADF);
  memset(&ss, 0, sizeof ss);
  r = peer ? getpeername(block_fd(b->c), (struct sockaddr *)&ss, &len)
           : getsockname(block_fd(b->c), (struct sockaddr *)&ss, &len);
  if (r != 0) return tsk_sock_fail(L, -errno);
  r = tsk_addr_push(L, (struct sockaddr *)&ss, !peer);
  if (r == 3 && b->family == AF_UNSPEC) {  /* LuaSocket names the socket's */
    lua_pop(L, 1);                         /* family, not the address's: */
    lua_pushliteral(L, "unspec");          /* none after a failed bind or */
  }                                        /* connect */
  return r;
}

static int meth_getpeername(lua_State *L) { return addrof(L, 1); }
static int meth_getsockname(lua_State *L) { return addrof(L, 0); }

static int meth_getfamily(lua_State *L) {
  Box *b = (Box *)checkbox(L, R_ANY);
  lua_pushstring(L, b->family == AF_INET6 ? "inet6" : "inet4");
  return 1;
}

/* "max-line": the longest line "*l" buffers (a tasksock extension). */
static int set_maxline(lua_State *L, int fd, void *obj) {
  lua_Integer n = luaL_checkinteger(L, 3);
  (void)fd;
  luaL_argcheck(L, n > 0 && n < (lua_Integer)TSK_BUF_MAX, 3, "out of range");
  ((Box *)obj)->maxline = (uint32_t)n;
  lua_pushnumber(L, 1);
  return 1;
}

static int get_maxline(lua_State *L, int fd, void *obj) {
  (void)fd;
  lua_pushinteger(L, (lua_Integer)((Box *)obj)->maxline);
  return 1;
}

/* getoption("error"): SO_ERROR, which a failed connect leaves set until
** connect or this takes it (see the C_* states) */
static int get_error(lua_State *L, int fd, void *obj) {
  Tcp *c = ((Box *)obj)->c;
  if (c != NULL) {
    int err = takeerror(c);
    if (err != 0) {
      lua_pushstring(L, tsk_sock_strerror(err));
      return 1;
    }
    /* taken already, or connectready will read SO_ERROR itself */
    if (c->cstate == C_FAILED || c->cstate == C_STOLEN || c->cstate == C_PENDING) {
      lua_pushnil(L);
      return 1;
    }
  }
  return tsk_opt_get_error(L, fd, obj);
}

static const tsk_Option options[] = {  /* looked up in order: servers set
                                          tcp-nodelay on every connection */
  {"tcp-nodelay", tsk_opt_set_tcpnodelay, tsk_opt_get_tcpnodelay},
  {"keepalive", tsk_opt_set_keepalive, tsk_opt_get_keepalive},
  {"reuseaddr", tsk_opt_set_reuseaddr, tsk_opt_get_reuseaddr},
  {"reuseport", tsk_opt_set_reuseport, tsk_opt_get_reuseport},
  {"tcp-keepidle", tsk_opt_set_tcpkeepidle, tsk_opt_get_tcpkeepidle},
  {"tcp-keepcnt", tsk_opt_set_tcpkeepcnt, tsk_opt_get_tcpkeepcnt},
  {"tcp-keepintvl", tsk_opt_set_tcpkeepintvl, tsk_opt_get_tcpkeepintvl},
#ifdef TCP_DEFER_ACCEPT
  {"tcp-defer-accept", tsk_opt_set_tcpdeferaccept, NULL},
#endif
#ifdef TCP_FASTOPEN
  {"tcp-fastopen", tsk_opt_set_tcpfastopen, NULL},
#endif
#ifdef TCP_FASTOPEN_CONNECT
  {"tcp-fastopen-connect", tsk_opt_set_tcpfastopenconnect, NULL},
#endif
  {"ipv6-v6only", tsk_opt_set_ipv6only, NULL},  /* LuaSocket cannot read it */
  {"linger", tsk_opt_set_linger, tsk_opt_get_linger},
  {"recv-buffer-size", tsk_opt_set_recvbuf, tsk_opt_get_recvbuf},
  {"send-buffer-size", tsk_opt_set_sendbuf, tsk_opt_get_sendbuf},
  {"error", NULL, get_error},
  {"max-line", set_maxline, get_maxline},
  {NULL, NULL, NULL}
};

static int meth_setoption(lua_State *L) {
  Box *b = (Box *)checkbox(L, R_ANY);
  return tsk_opt_meth_setoption(L, options, block_fd(b->c), b);
}

static int meth_getoption(lua_State *L) {
  Box *b = (Box *)checkbox(L, R_ANY);
  return tsk_opt_meth_getoption(L, options, block_fd(b->c), b);
}

/* --- readiness for socket.select (socket.h) ---------------------------- */

/* What poll(2) says of fd now (it adds no watcher: libuv is unaffected). */
static int pollnow(int fd, int write) {
  struct pollfd p;
  p.fd = fd;
  p.events = write ? POLLOUT : POLLIN;
  p.revents = 0;
  if (poll(&p, 1, 0) <= 0) return 0;
  return (p.revents & (write ? (POLLOUT | POLLERR) : (POLLIN | POLLHUP | POLLERR))) != 0;
}

static int tcp_ready(lua_State *L, int idx, int write) {
  Box *b = (Box *)lua_touserdata(L, idx);
  Tcp *c = b->c;
  if (c == NULL) return 1;
  /* a server: the kernel's queue says (c->pending may be stale: the
  ** connection it saw may have been accepted since) */
  if (c->listening) return !write && (c->rerr != 0 || pollnow(block_fd(c), 0));
  switch (c->cstate) {
    case C_PENDING: return 0;
    case C_FAILED: case C_STOLEN: return 1;
    case C_DONE: case C_CONNECTED:
      /* writable: nothing in flight and room in the kernel */
      if (write) return !c->busy && pollnow(block_fd(c), 1);
      /* bytes the loop has not read yet count too, as for LuaSocket's
      ** poll: select may return at once for another object */
      return tsk_buf_len(&c->buf) > 0 || c->rerr != 0 || c->kready || pollnow(block_fd(c), 0);
    default: return pollnow(block_fd(c), write);  /* idle: the kernel knows */
  }
}

static int tcp_watch(lua_State *L, int idx, int write, tsk_Watch *w) {
  Box *b = (Box *)lua_touserdata(L, idx);
  Tcp *c = b->c;
  if (c == NULL) return 1;
  if (!c->listening &&
      c->cstate != C_PENDING && c->cstate != C_DONE && c->cstate != C_CONNECTED)
    return 1;
  tsk_watch_link(&c->watchers, w, c);
  if (!write && !c->listening) {
    c->rwatch = 1;
    startread(c);
  }
  else if (write && !c->listening) {  /* (in flight: its end fires them) */
    c->wwatch = 1;
    repoll(c);
  }
  refresh(c);
  return 0;
}

static void tcp_unwatch(tsk_Watch *w) {
  Tcp *c = (Tcp *)w->obj;
  tsk_watch_unlink(w);
  if (c->watchers == NULL) c->rwatch = 0;  /* (reading stops at its next event) */
  if (c->watchers == NULL && c->wwatch) {
    c->wwatch = 0;
    repoll(c);
  }
  refresh(c);
}

static const tsk_Ready tcp_readiness = {tcp_ready, tcp_watch, tcp_unwatch};

/* --- constructors ----------------------------------------------------- */

static int create(lua_State *L, int family) {
  Box *b = newbox(L, R_MASTER, family, &tcpkind);
  if (family != AF_UNSPEC) {
    int r = ensureblock(L, b, family);
    if (r != 0) return tsk_sock_fail(L, r);
  }
  return 1;
}

static int global_tcp(lua_State *L) { return create(L, AF_UNSPEC); }

/* socket.gettime(): the wall clock in seconds. */
static int global_gettime(lua_State *L) {
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  lua_pushnumber(L, (lua_Number)tv.tv_sec + (lua_Number)tv.tv_usec * 1e-6);
  return 1;
}
static int global_tcp4(lua_State *L) { return create(L, AF_INET); }
static int global_tcp6(lua_State *L) { return create(L, AF_INET6); }

void tsk_tcp_open(lua_State *L) {
  static const luaL_Reg meths[] = {
    {"__gc", meth_gc},
    {"__close", meth_gc},
    {"accept", meth_accept},
    {"bind", meth_bind},
    {"close", meth_close},
    {"connect", meth_connect},
    {"dirty", meth_dirty},
    {"getfamily", meth_getfamily},
    {"getfd", meth_getfd},
    {"getoption", meth_getoption},
    {"getpeername", meth_getpeername},
    {"getsockname", meth_getsockname},
    {"getstats", meth_getstats},
    {"gettimeout", meth_gettimeout},
    {"listen", meth_listen},
    {"receive", meth_receive},
    {"receiveany", meth_receiveany},
    {"send", meth_send},
    {"setfd", meth_setfd},
    {"setoption", meth_setoption},
    {"setpeername", meth_connect},
    {"setsockname", meth_bind},
    {"setstats", meth_setstats},
    {"settimeout", meth_settimeout},
    {"shutdown", meth_shutdown},
    {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"tcp", global_tcp},
    {"tcp4", global_tcp4},
    {"tcp6", global_tcp6},
    {"gettime", global_gettime},
    {"_methods", tsk_class_lmethods},
    {NULL, NULL}
  };
  tsk_Sched *S = tsk_sched(L);
  struct sigaction sa;
  /* A write to a connection the peer has reset must fail with EPIPE
  ** ("closed"), not kill the process: ignore SIGPIPE unless someone
  ** handles it, as LuaSocket does when it loads. */
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
    signal(SIGPIPE, SIG_IGN);
  tsk_class_new(L, S, MASTER, meths);
  tsk_class_new(L, S, CLIENT, meths);
  tsk_class_new(L, S, SERVER, meths);
  tsk_class_group(L, MASTER, ANY);
  tsk_class_group(L, CLIENT, ANY);
  tsk_class_group(L, SERVER, ANY);
  tsk_class_group(L, MASTER, STREAM);
  tsk_class_group(L, CLIENT, STREAM);
  tsk_class_group(L, SERVER, STREAM);
  tsk_class_ready(L, MASTER, &tcp_readiness);
  tsk_class_ready(L, CLIENT, &tcp_readiness);
  tsk_class_ready(L, SERVER, &tcp_readiness);
  tsk_socket_setfuncs(L, S, funcs);
}

/* --- Unix-domain streams (socket.unix): the same sockets,
** with paths for addresses ------------------------------------------- */

#define UNIXPATH (sizeof(((struct sockaddr_un *)0)->sun_path))

/* unix:connect(path) */
static int meth_uconnect(lua_State *L) {
  Box *b = (Box *)checkbox(L, R_MASTER);
  const char *path = luaL_checkstring(L, 2);
  tsk_Sched *S = tsk_upsched(L);
  struct sockaddr_un sa;
  socklen_t len;
  int r;
  tsk_timeout_markstart(&b->tm);
  lua_settop(L, 2);
  if (strlen(path) >= UNIXPATH) return tsk_fail(L, "path too long");
  /* LuaSocket makes the descriptor with the object and never again: a
  ** failed bind or connect, or close, leaves the object without one */
  if (b->c == NULL) return tsk_fail(L, "closed");
  switch (b->c->cstate) {
    case C_PENDING:
      if (b->c->wowner != NULL) return tsk_sock_fail(L, UV_EALREADY);
      return waitconnect(L, b, -1);
    case C_DONE:
      setrole(L, 1, b, R_CLIENT);
      /* fall through */
    case C_FAILED: return connected(L, b->c);
    case C_CONNECTED: return tsk_sock_fail(L, UV_EISCONN);
    default: break;
  }
  /* a Unix-domain connect is done or refused at once, unless the
  ** listener's backlog is full (EAGAIN) */
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, strlen(path));
  /* the length of the path (not of sun_path), as LuaSocket: "" and
  ** "\0name" ask for an autobound abstract address */
  len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
  do r = connect(block_fd(b->c), (struct sockaddr *)&sa, len);
  while (r != 0 && errno == EINTR);
  if (r == 0) {
    b->c->cstate = C_CONNECTED;
    setrole(L, 1, b, R_CLIENT);
    lua_pushnumber(L, 1);
    return 1;
  }
  r = -errno;
  if (r == -EAGAIN || r == -EINPROGRESS) {
    /* LuaSocket's socket_connect: "timeout" if it may not wait, else it
    ** polls for the outcome, and an unconnected descriptor is writable
    ** at once: success, unless it polls readable or in error and a recv
    ** of 0 bytes fails (a send then says "Transport endpoint is not
    ** connected") */
    struct pollfd p;
    char ch;
    p.fd = block_fd(b->c);
    p.events = POLLIN | POLLOUT;
    p.revents = 0;
    if (waittime(b) == 0) r = TSK_WTIMEOUT;
    else if (r == -EAGAIN && poll(&p, 1, 0) > 0) {
      if (!(p.revents & (POLLIN | POLLERR)) || recv(p.fd, &ch, 0, 0) == 0) {
        b->c->cstate = C_CONNECTED;
        setrole(L, 1, b, R_CLIENT);
        lua_pushnumber(L, 1);
        return 1;
      }
      r = -errno;
    }
    else {  /* in progress: the loop reports how it went */
      tsk_checkblock(L, S);
      if ((r = startconnect(b->c, (struct sockaddr *)&sa, len)) != 0) return tsk_sock_fail(L, r);
      return waitconnect(L, b, -1);
    }
  }
  box_close(b);  /* as LuaSocket's, on any failure */
  return tsk_sock_fail(L, r);
}

/* unix:bind(path) */
static int meth_ubind(lua_State *L) {
  Box *b = (Box *)checkbox(L, R_MASTER);
  const char *path = luaL_checkstring(L, 2);
  struct sockaddr_un sa;
  int r;
  if (strlen(path) >= UNIXPATH) return tsk_fail(L, "path too long");
  if (b->c == NULL) return tsk_sock_fail(L, UV_EBADF);  /* (see meth_uconnect) */
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, strlen(path));
  if (bind(block_fd(b->c), (struct sockaddr *)&sa,
           (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path))) != 0) {
    r = -errno;
    box_close(b);
    return tsk_sock_fail(L, r);
  }
  lua_pushnumber(L, 1);
  return 1;
}

/* unix:getsockname(): the path ("" when unnamed) */
static int meth_ugetsockname(lua_State *L) {
  Box *b = (Box *)checkbox(L, R_ANY);
  struct sockaddr_un sa;
  socklen_t len = sizeof sa;
  size_t off = offsetof(struct sockaddr_un, sun_path);
  if (b->c == NULL) return tsk_sock_fail(L, UV_EBADF);
  /* getsockname(2) itself: libuv's reads sun_path even when the kernel
  ** filled none of it (an unnamed socket) */
  memset(&sa, 0, sizeof sa);
  if (getsockname(block_fd(b->c), (struct sockaddr *)&sa, &len) != 0)
    return tsk_sock_fail(L, -errno);
  lua_pushlstring(L, sa.sun_path, len > off ? strnlen(sa.sun_path, len - off) : 0);
  return 1;
}

/* unix:setfd(fd): adopt fd (a connected one reads ahead). */
static int meth_usetfd(lua_State *L) {
  return setfd(L, (Box *)checkbox(L, R_ANY), AF_UNIX);
}

static const tsk_Option unixoptions[] = {
  {"keepalive", tsk_opt_set_keepalive, NULL},
  {"reuseaddr", tsk_opt_set_reuseaddr, NULL},
  {"linger", tsk_opt_set_linger, NULL},
  {NULL, NULL, NULL}
};

static int meth_usetoption(lua_State *L) {
  Box *b = (Box *)checkbox(L, R_ANY);
  return tsk_opt_meth_setoption(L, unixoptions, block_fd(b->c), b);
}

/* socket.unix.stream(): a master with its descriptor. */
static int global_unixstream(lua_State *L) {
  Box *b = newbox(L, R_MASTER, AF_UNIX, &unixkind);
  int r = ensureblock(L, b, AF_UNIX);
  if (r != 0) return tsk_sock_fail(L, r);
  return 1;
}

void tsk_unix_open(lua_State *L) {
  static const luaL_Reg meths[] = {
    {"__gc", meth_gc},
    {"__close", meth_gc},
    {"accept", meth_accept},
    {"bind", meth_ubind},
    {"close", meth_close},
    {"connect", meth_uconnect},
    {"dirty", meth_dirty},
    {"getfd", meth_getfd},
    {"getsockname", meth_ugetsockname},
    {"getstats", meth_getstats},
    {"listen", meth_listen},
    {"receive", meth_receive},
    {"send", meth_send},
    {"setfd", meth_usetfd},
    {"setoption", meth_usetoption},
    {"setpeername", meth_uconnect},
    {"setsockname", meth_ubind},
    {"setstats", meth_setstats},
    {"settimeout", meth_settimeout},
    {"shutdown", meth_shutdown},
    {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"stream", global_unixstream},
    {NULL, NULL}
  };
  tsk_Sched *S = tsk_sched(L);
  const char *cls[3];
  int i;
  cls[0] = unixkind.master;
  cls[1] = unixkind.client;
  cls[2] = unixkind.server;
  for (i = 0; i < 3; i++) {
    tsk_class_new(L, S, cls[i], meths);
    tsk_class_group(L, cls[i], unixkind.any);
    tsk_class_group(L, cls[i], STREAM);
    tsk_class_ready(L, cls[i], &tcp_readiness);
  }
  lua_newtable(L);
  tsk_setfuncs(L, S, funcs);
  lua_setfield(L, -2, "_unix");
}
