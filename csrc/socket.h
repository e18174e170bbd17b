/*
** socket.h: what every socket kind (tcp.c, udp.c, unix.c) shares, in the
** layers LuaSocket has: a class system ("tcp{client}" with groups such as
** "tcp{any}"), error mapping (uv code -> LuaSocket's exact string),
** address parsing and formatting, socket options as a table of data, the
** timeout state ('b' block / 't','r' total), and the life cycle of a
** malloc'd libuv handle (uv_close, free in the close callback, the open
** socket count in S->nsockets).
**
** Conventions: inside C an error is 0 or a negative uv code, or one of the
** positive TSK_WTIMEOUT / TSK_WCLOSED of core.h; tsk_sock_strerror turns
** any of them into LuaSocket's text once, at the Lua boundary.
*/
#ifndef TSK_SOCKET_H
#define TSK_SOCKET_H

#include <sys/socket.h>
#include <netdb.h>

#include "core.h"

/* === classes (LuaSocket's auxiliar layer) ============================== */

/*
** Create the class `classname` (e.g. "tcp{client}"): a metatable in the
** registry under "tasksock." .. classname (LuaSocket may be loaded in the
** same state and owns the plain names; group marks are prefixed too),
** __name = classname, __index = a table of methods (each given
** S as upvalue 1, so tsk_upsched works in them), __tostring giving
** "classname: 0x...", __name, and the field `class` = classname.
** Extra metamethods (names starting with "__", e.g. __gc, __close) in
** methods go to the metatable itself, not to __index.  [-0, +0, m]
*/
void tsk_class_new(lua_State *L, tsk_Sched *S, const char *classname,
                   const luaL_Reg *methods);

/* Make classname a member of groupname (e.g. "tcp{any}").  [-0, +0, m] */
void tsk_class_group(lua_State *L, const char *classname, const char *groupname);

/* Give the object at idx the metatable of classname, a string with
** static storage (its address is a cache key, in S).  [-0, +0, m] */
void tsk_class_set(lua_State *L, tsk_Sched *S, int idx, const char *classname);

/* The userdata at arg if it is of classname, else an argument error
** "<classname> expected" (LuaSocket's wording).  [-0, +0, v] */
void *tsk_class_check(lua_State *L, const char *classname, int arg);

/* The same for a group: the object's class belongs to groupname. */
void *tsk_class_checkgroup(lua_State *L, const char *groupname, int arg);

/* The userdata at arg if its class belongs to groupname, else NULL. */
void *tsk_class_testgroup(lua_State *L, const char *groupname, int arg);

/* Add funcs (S as upvalue 1) to core._socket, the table every socket kind
** shares, in the module table on top of the stack.  [-0, +0, m] */
void tsk_socket_setfuncs(lua_State *L, tsk_Sched *S, const luaL_Reg *funcs);

/* Lua: _methods(classname): the method table (__index) of one of our
** classes, or nil (the drop-in wraps send/receive there for _DEBUG). */
int tsk_class_lmethods(lua_State *L);

/* The class name of the object at idx ("tcp{client}"), or NULL. */
const char *tsk_class_name(lua_State *L, int idx);

/* === errors ============================================================ */

/*
** LuaSocket's message for err: NULL for 0; "timeout" (TSK_WTIMEOUT,
** UV_ETIMEDOUT), "closed" (TSK_WCLOSED, UV_EOF, UV_ECONNRESET,
** UV_ECONNABORTED, UV_EPIPE), "connection refused", "address already in
** use", "already connected", "permission denied"; resolver codes
** (UV_EAI_*) get getaddrinfo's LuaSocket wording; anything else the C
** library's strerror text (LuaSocket's: "Bad file descriptor", with its
** capital letter, not libuv's lowercase text).
*/
const char *tsk_sock_strerror(int err);

/* Push nil, tsk_sock_strerror(err) and return 2.  [-0, +2, m] */
int tsk_sock_fail(lua_State *L, int err);

/* === numbers =========================================================== */

/* A Lua number as a C int or long, as LuaSocket's casts give it on x86
** but without their undefined behaviour: NaN and values out of range
** become INT_MIN / LONG_MIN. */
int tsk_num2int(lua_Number n);
long tsk_num2long(lua_Number n);

/* === addresses ========================================================= */

/* Address families as LuaSocket names them: "inet", "inet6" in
** getpeername/getsockname and in connect's family argument. */
const char *tsk_family_name(int family);

/*
** Fill *ss from a numeric host ("127.0.0.1", "::1"; "*" means the
** wildcard of family, AF_INET when family is AF_UNSPEC) and port 0..65535.
** family AF_UNSPEC accepts either kind. No name resolution is done.
** Returns 0, or UV_EINVAL when host is not a numeric address of family.
*/
int tsk_addr_numeric(const char *host, int port, int family,
                     struct sockaddr_storage *ss);

/*
** Push ip, port, family of sa (LuaSocket's getpeername/getsockname
** results); the port as a string when portstring (Debian's getsockname)
** else as a number (getpeername). Returns 3, or pushes nil, err and
** returns 2.
*/
int tsk_addr_push(lua_State *L, const struct sockaddr *sa, int portstring);

/*
** Resolve host:port for a socket of family (AF_UNSPEC, AF_INET, AF_INET6)
** and socktype (SOCK_STREAM/SOCK_DGRAM); passive for bind ("*" or NULL
** host = wildcard). Numeric hosts are parsed inline; names go to libuv's
** thread pool through dns.h (blocking only the calling tasklet).
** Continues with k(L, status, ctx): on success t->wresult == 0 and an
** object is on top of the stack whose address list tsk_addr_list gives;
** on failure t->wresult is a negative uv code (UV_EAI_*). When the host is
** numeric k is called directly, without waiting.
*/
int tsk_addr_resolve(lua_State *L, tsk_Sched *S, const char *host, const char *serv,
                     int family, int socktype, int passive,
                     lua_KContext ctx, lua_KFunction k);

/* The struct addrinfo list held by the object at idx (from
** tsk_addr_resolve).  [-0, +0, -] */
const struct addrinfo *tsk_addr_list(lua_State *L, int idx);

/* === timeouts (LuaSocket's timeout layer) ============================== */

/* block bounds each wait, total the whole call; < 0 means no bound;
** start is when the current call began (tsk_now() seconds). */
typedef struct tsk_Timeout {
  double block, total, start;
} tsk_Timeout;

void tsk_timeout_init(tsk_Timeout *tm, double block, double total);

/* Mark the start of a call (for the total bound). */
static inline void tsk_timeout_markstart(tsk_Timeout *tm) {
  if (tm->total >= 0) tm->start = tsk_now();
}

/* tsk_timeout_left with a total bound (socket.c). */
double tsk_timeout_totalleft(const tsk_Timeout *tm);

/* Seconds the next wait may last: < 0 forever, 0 not at all (fail with
** "timeout" at once). LuaSocket's timeout_getretry. Inline: every send and
** receive asks, and most sockets have no total bound. As LuaSocket's
** timeout_get, NaN included (settimeout keeps it): a NaN block alone is 0
** (its MAX(NaN, 0)). */
static inline double tsk_timeout_left(const tsk_Timeout *tm) {
  if (tm->total < 0) return tm->block != tm->block ? 0 : tm->block;  /* < 0: forever */
  return tsk_timeout_totalleft(tm);
}

/* Is the timeout zero (non-blocking), i.e. must a call fail at once? */
int tsk_timeout_iszero(const tsk_Timeout *tm);

/* sock:settimeout(value[, mode]) with args at 2, 3: 'b' (default) sets
** block, 't' or 'r' sets total, nil/negative = -1. Returns 1 (pushes 1.0
** as LuaSocket does). Raises "invalid timeout mode". */
int tsk_timeout_meth_settimeout(lua_State *L, tsk_Timeout *tm);

/* sock:gettimeout(): block, total (floats). Returns 2. */
int tsk_timeout_meth_gettimeout(lua_State *L, tsk_Timeout *tm);

/* === options (LuaSocket's option layer, as data) ======================= */

/*
** One row of a class's option table: name, setter, getter (either may be
** NULL when the option is write- or read-only). The setter reads the value
** at stack index 3 and pushes 1 or nil, err; the getter pushes the value
** or nil, err; both return the number of values pushed. fd is the OS
** socket (-1 if none yet: setsockopt then fails as in LuaSocket, with
** "setsockopt failed" / "getsockopt failed"); obj is the socket object
** for options that are state rather than socket options.
*/
typedef struct tsk_Option {
  const char *name;
  int (*set)(lua_State *L, int fd, void *obj);
  int (*get)(lua_State *L, int fd, void *obj);
} tsk_Option;

/* sock:setoption(name, value) / sock:getoption(name) over opts (ended by
** a NULL name). An unknown name raises "unsupported option `name'". */
int tsk_opt_meth_setoption(lua_State *L, const tsk_Option *opts, int fd, void *obj);
int tsk_opt_meth_getoption(lua_State *L, const tsk_Option *opts, int fd, void *obj);

/* Ready-made rows' functions, for any class's table. */
int tsk_opt_set_keepalive(lua_State *L, int fd, void *obj);
int tsk_opt_get_keepalive(lua_State *L, int fd, void *obj);
int tsk_opt_set_reuseaddr(lua_State *L, int fd, void *obj);
int tsk_opt_get_reuseaddr(lua_State *L, int fd, void *obj);
int tsk_opt_set_reuseport(lua_State *L, int fd, void *obj);
int tsk_opt_get_reuseport(lua_State *L, int fd, void *obj);
int tsk_opt_set_tcpnodelay(lua_State *L, int fd, void *obj);
int tsk_opt_get_tcpnodelay(lua_State *L, int fd, void *obj);
int tsk_opt_set_tcpkeepidle(lua_State *L, int fd, void *obj);
int tsk_opt_get_tcpkeepidle(lua_State *L, int fd, void *obj);
int tsk_opt_set_tcpkeepcnt(lua_State *L, int fd, void *obj);
int tsk_opt_get_tcpkeepcnt(lua_State *L, int fd, void *obj);
int tsk_opt_set_tcpkeepintvl(lua_State *L, int fd, void *obj);
int tsk_opt_get_tcpkeepintvl(lua_State *L, int fd, void *obj);
int tsk_opt_set_tcpdeferaccept(lua_State *L, int fd, void *obj);    /* (set only) */
int tsk_opt_set_tcpfastopen(lua_State *L, int fd, void *obj);
int tsk_opt_set_tcpfastopenconnect(lua_State *L, int fd, void *obj);
int tsk_opt_set_linger(lua_State *L, int fd, void *obj);
int tsk_opt_get_linger(lua_State *L, int fd, void *obj);
int tsk_opt_set_ipv6only(lua_State *L, int fd, void *obj);
int tsk_opt_get_ipv6only(lua_State *L, int fd, void *obj);
int tsk_opt_set_recvbuf(lua_State *L, int fd, void *obj);
int tsk_opt_get_recvbuf(lua_State *L, int fd, void *obj);
int tsk_opt_set_sendbuf(lua_State *L, int fd, void *obj);
int tsk_opt_get_sendbuf(lua_State *L, int fd, void *obj);
int tsk_opt_set_dontroute(lua_State *L, int fd, void *obj);
int tsk_opt_get_dontroute(lua_State *L, int fd, void *obj);
int tsk_opt_set_broadcast(lua_State *L, int fd, void *obj);
int tsk_opt_get_broadcast(lua_State *L, int fd, void *obj);
int tsk_opt_get_error(lua_State *L, int fd, void *obj);

/* Generic helpers for other rows: a boolean or integer socket option. */
int tsk_opt_setbool(lua_State *L, int fd, int level, int name);
int tsk_opt_getbool(lua_State *L, int fd, int level, int name);
int tsk_opt_setint(lua_State *L, int fd, int level, int name);
int tsk_opt_getint(lua_State *L, int fd, int level, int name);

/* === handles =========================================================== */

/*
** The life cycle of a datagram socket's libuv handle (stream sockets are
** in the scheduler's poller instead, poller.h): it is malloc'd (never inside
** a userdata), counted in S->nsockets while open, uv_unref'd except while
** a tasklet waits on it (tsk_handle_waiting), and closed with
** tsk_handle_close, which frees it in the close callback. The close
** callback touches no Lua state. Any memory a handle's pending requests
** use must live in the same malloc'd block (or be freed by their
** callbacks), because the userdata may be collected before they finish.
*/
void tsk_handle_opened(tsk_Sched *S, uv_handle_t *h);

/* uv_close h (unless already closing) and uncount it from S->nsockets;
** the close callback is cb, or (cb NULL) one that free()s the malloc'd
** block that starts with h. A cb of yours must free that block itself. */
void tsk_handle_close(tsk_Sched *S, uv_handle_t *h, uv_close_cb cb);

/* uv_ref h when waiting, else uv_unref it (a socket keeps the loop, and
** ts.run, alive only while a tasklet waits on it). */
void tsk_handle_waiting(uv_handle_t *h, int waiting);

/* The OS socket of h, or -1. */
int tsk_handle_fd(const uv_handle_t *h);

/* Constructors (tcp, tcp4, tcp6; udp..., unix...) go into the table
** "_socket" of the core module (create it if missing); socket.lua makes
** the LuaSocket namespace from it. */

/* === readiness, for socket.select (select.c) ========================= */

/*
** select must not put a second libuv watcher on the fd of one of our own
** sockets (libuv allows one per fd), so each socket kind answers for its
** own objects through a tsk_Ready attached to its classes: "is it ready
** now?" from what the kind already knows (read-ahead buffer, pending
** connection, write in flight), and "wake this tasklet when it may have
** become ready" through a list of tsk_Watch records that the kind fires
** from its own libuv callbacks. One select links one tsk_Watch per
** object and waits once; it unlinks every one of them when the wait ends
** (woken, timed out or killed). A watcher is only a hint: select checks
** readiness again after every wake-up.
*/
typedef struct tsk_Watch tsk_Watch;
struct tsk_Watch {
  tsk_Watch *next, **pprev;   /* in one socket's list; pprev NULL: unlinked */
  tsk_Tasklet *t;             /* the selecting tasklet, woken by tsk_watch_fire */
  void *obj;                  /* the kind's block the list belongs to */
  const struct tsk_Ready *kind;
};

typedef struct tsk_Ready {
  /* The socket at idx of L (a userdata of the kind): 1 if it is ready for
  ** reading (write == 0) or writing (write == 1) now, else 0. A closed
  ** socket counts as ready (the next call reports "closed"). */
  int (*ready)(lua_State *L, int idx, int write);
  /* Link w (w->t set) so that the socket at idx wakes w->t when it may have
  ** become ready for the direction, starting what makes that observable
  ** (read-ahead, a receive). Returns 0, or 1 when the kind cannot tell
  ** (w stays unlinked; select then checks again after a short while). */
  int (*watch)(lua_State *L, int idx, int write, tsk_Watch *w);
  /* Unlink w (linked by watch) and stop what only it needed. */
  void (*unwatch)(tsk_Watch *w);
} tsk_Ready;

/* Attach r to classname (the metatable field "tasksock.ready").
** [-0, +0, m] */
void tsk_class_ready(lua_State *L, const char *classname, const tsk_Ready *r);

/* The tsk_Ready of the object at idx, or NULL if it is not one of ours. */
const tsk_Ready *tsk_ready_of(lua_State *L, int idx);

/* Link w at the head of *head with w->obj = obj; unlink it (if linked). */
void tsk_watch_link(tsk_Watch **head, tsk_Watch *w, void *obj);
void tsk_watch_unlink(tsk_Watch *w);

/* Wake the tasklet of every watcher in the list (they stay linked). */
void tsk_watch_fire(tsk_Watch *head);

/* The object goes away: unlink every watcher and wake its tasklet. */
void tsk_watch_closeall(tsk_Watch **head);

/* For an object select does not know (a wrapper with getfd) whose
** descriptor is io's (one of our stream sockets, in the poller): 1 if io
** holds what LuaSocket would still have in the kernel (bytes read ahead
** beyond what its last receive left, or the peer's end), so that polling
** the descriptor would say readable; else 0. (tcp.c) */
int tsk_stream_readahead(tsk_Io *io);

#endif
