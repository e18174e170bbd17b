/*
** socket.c: what every socket kind shares (see socket.h): classes, error
** words, addresses, timeouts, the option table and handle life cycle.
*/
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>

#include "socket.h"
#include "dns.h"

/* === classes =========================================================== */

/*
** LuaSocket's layout, kept private: each class is a metatable holding
** __index = the method table (which has class = classname), __name and the
** metamethods. The metatables live in a table of our own (registry at
** &classes_key, by class name), not under the registry's string keys, and
** each carries its marks (its own name and its groups' names, as true) in
** a table at &marks_key: LuaSocket registers the very same class names
** when both are loaded in one state (the differential specs, the drop-in),
** and neither may take the other's metatables or pass the other's checks.
** Checks cost a metatable fetch and two look-ups by light userdata and
** by a constant string (which Lua's API string cache resolves without
** hashing): they run on every method call.
*/
static char classes_key, marks_key, ready_key;  /* addresses only */

/* Push the metatable of classname (nil if there is none). */
static void pushclass(lua_State *L, const char *classname) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &classes_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &classes_key);
  }
  lua_getfield(L, -1, classname);
  lua_remove(L, -2);
}

static int class_tostring(lua_State *L) {
  const char *name = tsk_class_name(L, 1);
  lua_pushfstring(L, "%s: %p", name ? name : "?", lua_touserdata(L, 1));
  return 1;
}

void tsk_class_new(lua_State *L, tsk_Sched *S, const char *classname,
                   const luaL_Reg *methods) {
  int i;
  pushclass(L, classname);                   /* nil, or an old one to replace */
  lua_pop(L, 1);
  for (i = 0; i < S->nclasses; i++)          /* what tsk_class_set knew is stale */
    luaL_unref(L, LUA_REGISTRYINDEX, S->classes[i].ref);
  S->nclasses = 0;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &classes_key);  /* classes */
  lua_newtable(L);                           /* classes mt */
  lua_pushstring(L, classname);
  lua_setfield(L, -2, "__name");
  lua_createtable(L, 0, 2);                  /* its marks: itself for now */
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, classname);
  lua_rawsetp(L, -2, &marks_key);
  lua_newtable(L);                           /* classes mt idx */
  lua_pushstring(L, classname);
  lua_setfield(L, -2, "class");
  for (; methods->name != NULL; methods++) {
    int meta = methods->name[0] == '_' && methods->name[1] == '_';
    lua_pushlightuserdata(L, S);
    lua_pushcclosure(L, methods->func, 1);   /* classes mt idx f */
    lua_setfield(L, meta ? -3 : -2, methods->name);
  }
  lua_setfield(L, -2, "__index");            /* classes mt */
  if (lua_getfield(L, -1, "__tostring") == LUA_TNIL) {
    lua_pushcfunction(L, class_tostring);
    lua_setfield(L, -3, "__tostring");
  }
  lua_pop(L, 1);
  lua_setfield(L, -2, classname);            /* classes */
  lua_pop(L, 1);
}

void tsk_class_group(lua_State *L, const char *classname, const char *groupname) {
  pushclass(L, classname);
  lua_rawgetp(L, -1, &marks_key);
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, groupname);
  lua_pop(L, 2);
}

void tsk_class_set(lua_State *L, tsk_Sched *S, int idx, const char *classname) {
  int i;
  idx = lua_absindex(L, idx);
  /* the metatable by the name's address (the names are static), found by
  ** name the first time: a registry ref, no string or hash look-up per
  ** object. Making a class drops this cache, so a class made anew is
  ** found anew. */
  for (i = 0; i < S->nclasses; i++)
    if (S->classes[i].name == classname) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, S->classes[i].ref);
      lua_setmetatable(L, idx);
      return;
    }
  pushclass(L, classname);
  if (S->nclasses < TSK_NCLASSES) {  /* (else found by name each time) */
    lua_pushvalue(L, -1);
    S->classes[S->nclasses].ref = luaL_ref(L, LUA_REGISTRYINDEX);
    S->classes[S->nclasses++].name = classname;
  }
  lua_setmetatable(L, idx);
}

const char *tsk_class_name(lua_State *L, int idx) {
  const char *name = NULL;
  if (lua_getmetatable(L, idx)) {
    if (lua_getfield(L, -1, "__name") == LUA_TSTRING) name = lua_tostring(L, -1);
    lua_pop(L, 2);  /* the name lives on in the metatable */
  }
  return name;
}

/* Does the object at arg carry the mark (its class, or a group of it)? */
static void *testmark(lua_State *L, const char *mark, int arg) {
  void *p = NULL;
  if (lua_type(L, arg) == LUA_TUSERDATA && lua_getmetatable(L, arg)) {
    if (lua_rawgetp(L, -1, &marks_key) == LUA_TTABLE) {
      if (lua_getfield(L, -1, mark) != LUA_TNIL) p = lua_touserdata(L, arg);
      lua_pop(L, 1);
    }
    lua_pop(L, 2);
  }
  return p;
}

/* --- protect (LuaSocket's except.c) ----------------------------------- */

/* How a protected call ended: its results; or, when it raised a try's
** error (a table whose metatable is upvalue 2, which no Lua code can
** reach), nil and that error's message; or the error raised on. */
static int protected_end(lua_State *L, int status, lua_KContext ctx) {
  (void)ctx;
  if (status == LUA_OK || status == LUA_YIELD) return lua_gettop(L);
  if (lua_type(L, -1) == LUA_TTABLE && lua_getmetatable(L, -1)) {
    int fromtry = lua_rawequal(L, -1, lua_upvalueindex(2));
    lua_pop(L, 1);
    if (fromtry) {
      lua_pushnil(L);
      lua_rawgeti(L, -2, 1);
      return 2;
    }
  }
  return lua_error(L);
}

/* The function protect makes: upvalue 1 called in one C frame, as
** LuaSocket's, so error levels and tracebacks through it are the same
** (a Lua wrapper would add a frame). Its pcall may yield: f may block. */
static int protected_call(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  return protected_end(L, lua_pcallk(L, lua_gettop(L) - 1, LUA_MULTRET, 0, 0,
                                     protected_end), 0);
}

/* protect(f) (upvalue 1: the metatable of a try's errors). Like
** LuaSocket's, it takes anything: calling a non-function fails later. */
static int protect(lua_State *L) {
  lua_settop(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, protected_call, 2);
  return 1;
}

/* _protector(mt): socket.protect, for the try errors of metatable mt. */
static int protector(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_pushcclosure(L, protect, 1);
  return 1;
}

void tsk_socket_setfuncs(lua_State *L, tsk_Sched *S, const luaL_Reg *funcs) {
  if (lua_getfield(L, -1, "_socket") != LUA_TTABLE) {  /* the first kind makes it */
    lua_pop(L, 1);
    struct rlimit rl;
    lua_newtable(L);
    /* _SETSIZE: select has no FD_SETSIZE; the most descriptors it can be
    ** given is what the process may open (LuaSocket's test client makes
    ** _SETSIZE + 1 sockets and expects select to refuse them) */
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur > (rlim_t)INT_MAX)
      rl.rlim_cur = (rlim_t)INT_MAX;
    lua_pushinteger(L, (lua_Integer)rl.rlim_cur);
    lua_setfield(L, -2, "_setsize");
    lua_pushcfunction(L, protector);
    lua_setfield(L, -2, "_protector");
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "_socket");
  }
  tsk_setfuncs(L, S, funcs);
  lua_pop(L, 1);
}

int tsk_class_lmethods(lua_State *L) {
  pushclass(L, luaL_checkstring(L, 1));
  if (lua_istable(L, -1)) lua_getfield(L, -1, "__index");
  return 1;
}

static void classerror(lua_State *L, const char *expected, int arg) {
  luaL_argerror(L, arg, lua_pushfstring(L, "%s expected", expected));
}

void *tsk_class_check(lua_State *L, const char *classname, int arg) {
  void *p = testmark(L, classname, arg);
  if (p == NULL) classerror(L, classname, arg);
  return p;
}

void *tsk_class_testgroup(lua_State *L, const char *groupname, int arg) {
  return testmark(L, groupname, arg);
}

void *tsk_class_checkgroup(lua_State *L, const char *groupname, int arg) {
  void *p = testmark(L, groupname, arg);
  if (p == NULL) classerror(L, groupname, arg);
  return p;
}

/* === errors ============================================================ */

const char *tsk_sock_strerror(int err) {
  switch (err) {
    case 0: return NULL;
    case TSK_WTIMEOUT: case UV_ETIMEDOUT: return "timeout";
    case TSK_WCLOSED: case UV_EOF: case UV_ECONNRESET: case UV_ECONNABORTED:
    case UV_EPIPE: return "closed";
    case UV_EADDRINUSE: return "address already in use";
    case UV_EISCONN: return "already connected";
    case UV_EACCES: return "permission denied";
    case UV_ECONNREFUSED: return "connection refused";
    default: break;
  }
  if (err <= UV_EAI_ADDRFAMILY && err >= UV_EAI_PROTOCOL)  /* resolver codes */
    return tsk_gai_strerror(err);
  if (err < 0 && err > -4000) return strerror(-err);  /* libuv: -errno */
  return uv_strerror(err);
}

int tsk_num2int(lua_Number n) {
  if (!(n > (lua_Number)INT_MIN - 1 && n < (lua_Number)INT_MAX + 1)) return INT_MIN;
  return (int)n;
}

long tsk_num2long(lua_Number n) {
  /* -(lua_Number)LONG_MIN is 2^63 exactly; LONG_MAX + 1 is not representable */
  if (!(n >= (lua_Number)LONG_MIN && n < -(lua_Number)LONG_MIN)) return LONG_MIN;
  return (long)n;
}

int tsk_sock_fail(lua_State *L, int err) {
  const char *msg = tsk_sock_strerror(err);
  lua_pushnil(L);
  lua_pushstring(L, msg ? msg : "unknown error");
  return 2;
}

/* === addresses ========================================================= */

const char *tsk_family_name(int family) {
  switch (family) {
    case AF_INET: return "inet";
    case AF_INET6: return "inet6";
    case AF_UNIX: return "unix";
    default: return "unknown";
  }
}

int tsk_addr_numeric(const char *host, int port, int family,
                     struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  if (port < 0 || port > 65535) return UV_EINVAL;
  if (strcmp(host, "*") == 0) host = family == AF_INET6 ? "::" : "0.0.0.0";
  if (family != AF_INET6) {
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    if (inet_pton(AF_INET, host, &a->sin_addr) == 1) {
      a->sin_family = AF_INET;
      a->sin_port = htons((unsigned short)port);
      return 0;
    }
  }
  if (family != AF_INET) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET6, host, &a->sin6_addr) == 1) {
      a->sin6_family = AF_INET6;
      a->sin6_port = htons((unsigned short)port);
      return 0;
    }
  }
  return UV_EINVAL;
}

int tsk_addr_push(lua_State *L, const struct sockaddr *sa, int portstring) {
  char ip[INET6_ADDRSTRLEN];
  int port;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
    port = ntohs(a->sin_port);
  }
  else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
    port = ntohs(a->sin6_port);
  }
  else {
    lua_pushnil(L);
    lua_pushliteral(L, "unknown family");
    return 2;
  }
  lua_pushstring(L, ip);
  if (portstring) lua_pushfstring(L, "%d", port);
  else lua_pushinteger(L, port);
  lua_pushstring(L, tsk_family_name(sa->sa_family));
  return 3;
}

int tsk_addr_resolve(lua_State *L, tsk_Sched *S, const char *host, const char *serv,
                     int family, int socktype, int passive,
                     lua_KContext ctx, lua_KFunction k) {
  struct addrinfo hints;
  (void)S;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = family;
  hints.ai_socktype = socktype;
  if (passive) hints.ai_flags = AI_PASSIVE;
  /* "*": no name, as LuaSocket passes it; with AI_PASSIVE getaddrinfo
  ** gives the wildcard of each family (here 0.0.0.0, then ::) */
  if (host != NULL && strcmp(host, "*") == 0) host = NULL;
  return tsk_getaddrinfo(L, host, serv, &hints, ctx, k);
}

const struct addrinfo *tsk_addr_list(lua_State *L, int idx) {
  return tsk_addrinfo_get(L, idx);
}

/* === timeouts ========================================================== */

void tsk_timeout_init(tsk_Timeout *tm, double block, double total) {
  tm->block = block;
  tm->total = total;
  tm->start = 0;
}

/* (socket.h) Beside a total the total rules where the block is NaN (MIN(NaN,
** t) is t), and a NaN total is 0. */
double tsk_timeout_totalleft(const tsk_Timeout *tm) {
  double t = tm->total - (tsk_now() - tm->start);
  if (!(t > 0)) t = 0;  /* (NaN too) */
  if (tm->block < 0) return t;
  return tm->block < t ? tm->block : t;
}

int tsk_timeout_iszero(const tsk_Timeout *tm) {
  return tsk_timeout_left(tm) == 0;
}

int tsk_timeout_meth_settimeout(lua_State *L, tsk_Timeout *tm) {
  double t = luaL_optnumber(L, 2, -1);
  const char *mode = luaL_optstring(L, 3, "b");
  switch (*mode) {  /* NaN kept, as LuaSocket: gettimeout gives it back */
    case 'b': tm->block = t; break;
    case 'r': case 't': tm->total = t; break;
    default: luaL_argcheck(L, 0, 3, "invalid timeout mode");
  }
  lua_pushnumber(L, 1);
  return 1;
}

int tsk_timeout_meth_gettimeout(lua_State *L, tsk_Timeout *tm) {
  lua_pushnumber(L, tm->block);
  lua_pushnumber(L, tm->total);
  return 2;
}

/* === options =========================================================== */

/* LuaSocket's words, the name cut at 35 bytes as its sprintf does */
static int unsupported(lua_State *L, const char *name) {
  char msg[57];
  snprintf(msg, sizeof msg, "unsupported option `%.35s'", name);
  return luaL_argerror(L, 2, msg);
}

static const tsk_Option *findopt(lua_State *L, const tsk_Option *opts) {
  const char *name = luaL_checkstring(L, 2);
  for (; opts->name != NULL; opts++)
    if (strcmp(name, opts->name) == 0) return opts;
  unsupported(L, name);
  return NULL;
}

int tsk_opt_meth_setoption(lua_State *L, const tsk_Option *opts, int fd, void *obj) {
  const tsk_Option *o = findopt(L, opts);
  if (o->set == NULL) return unsupported(L, o->name);
  return o->set(L, fd, obj);
}

int tsk_opt_meth_getoption(lua_State *L, const tsk_Option *opts, int fd, void *obj) {
  const tsk_Option *o = findopt(L, opts);
  if (o->get == NULL) return unsupported(L, o->name);
  return o->get(L, fd, obj);
}

static int setfailed(lua_State *L) {
  lua_pushnil(L);
  lua_pushliteral(L, "setsockopt failed");
  return 2;
}

static int getfailed(lua_State *L) {
  lua_pushnil(L);
  lua_pushliteral(L, "getsockopt failed");
  return 2;
}

static int setraw(lua_State *L, int fd, int level, int name, const void *v,
                  socklen_t len) {
  if (fd < 0 || setsockopt(fd, level, name, v, len) < 0) return setfailed(L);
  lua_pushnumber(L, 1);
  return 1;
}

static int getraw(int fd, int level, int name, void *v, socklen_t len) {
  return fd >= 0 && getsockopt(fd, level, name, v, &len) == 0;
}

int tsk_opt_setbool(lua_State *L, int fd, int level, int name) {
  int v;
  luaL_checktype(L, 3, LUA_TBOOLEAN);  /* as LuaSocket: "boolean expected" */
  v = lua_toboolean(L, 3);
  return setraw(L, fd, level, name, &v, sizeof v);
}

int tsk_opt_getbool(lua_State *L, int fd, int level, int name) {
  int v = 0;
  if (!getraw(fd, level, name, &v, sizeof v)) return getfailed(L);
  lua_pushboolean(L, v);
  return 1;
}

int tsk_opt_setint(lua_State *L, int fd, int level, int name) {
  int v = tsk_num2int(lua_tonumber(L, 3));  /* as LuaSocket: no check */
  return setraw(L, fd, level, name, &v, sizeof v);
}

int tsk_opt_getint(lua_State *L, int fd, int level, int name) {
  int v = 0;
  if (!getraw(fd, level, name, &v, sizeof v)) return getfailed(L);
  lua_pushnumber(L, v);
  return 1;
}

#define BOOLOPT(id, level, name) \
  int tsk_opt_set_##id(lua_State *L, int fd, void *obj) { \
    (void)obj; return tsk_opt_setbool(L, fd, level, name); } \
  int tsk_opt_get_##id(lua_State *L, int fd, void *obj) { \
    (void)obj; return tsk_opt_getbool(L, fd, level, name); }
#define INTOPT(id, level, name) \
  int tsk_opt_set_##id(lua_State *L, int fd, void *obj) { \
    (void)obj; return tsk_opt_setint(L, fd, level, name); } \
  int tsk_opt_get_##id(lua_State *L, int fd, void *obj) { \
    (void)obj; return tsk_opt_getint(L, fd, level, name); }

BOOLOPT(keepalive, SOL_SOCKET, SO_KEEPALIVE)
BOOLOPT(reuseaddr, SOL_SOCKET, SO_REUSEADDR)
BOOLOPT(reuseport, SOL_SOCKET, SO_REUSEPORT)
BOOLOPT(tcpnodelay, IPPROTO_TCP, TCP_NODELAY)
BOOLOPT(ipv6only, IPPROTO_IPV6, IPV6_V6ONLY)
BOOLOPT(dontroute, SOL_SOCKET, SO_DONTROUTE)
BOOLOPT(broadcast, SOL_SOCKET, SO_BROADCAST)
INTOPT(tcpkeepidle, IPPROTO_TCP, TCP_KEEPIDLE)
INTOPT(tcpkeepcnt, IPPROTO_TCP, TCP_KEEPCNT)
INTOPT(tcpkeepintvl, IPPROTO_TCP, TCP_KEEPINTVL)
INTOPT(recvbuf, SOL_SOCKET, SO_RCVBUF)
INTOPT(sendbuf, SOL_SOCKET, SO_SNDBUF)

/* set only, as in LuaSocket, where the system has them (tcp.c lists them
** under the same #ifdefs) */
#define SETINTOPT(id, level, name) \
  int tsk_opt_set_##id(lua_State *L, int fd, void *obj) { \
    (void)obj; return tsk_opt_setint(L, fd, level, name); }
#ifdef TCP_DEFER_ACCEPT
SETINTOPT(tcpdeferaccept, IPPROTO_TCP, TCP_DEFER_ACCEPT)
#endif
#ifdef TCP_FASTOPEN
SETINTOPT(tcpfastopen, IPPROTO_TCP, TCP_FASTOPEN)
#endif
#ifdef TCP_FASTOPEN_CONNECT
SETINTOPT(tcpfastopenconnect, IPPROTO_TCP, TCP_FASTOPEN_CONNECT)
#endif

/* linger: {on = boolean, timeout = number} */
int tsk_opt_set_linger(lua_State *L, int fd, void *obj) {
  struct linger li;
  (void)obj;
  if (!lua_istable(L, 3)) luaL_typeerror(L, 3, "table");
  lua_getfield(L, 3, "on");
  if (!lua_isboolean(L, -1)) luaL_argerror(L, 3, "boolean 'on' field expected");
  li.l_onoff = lua_toboolean(L, -1);
  lua_getfield(L, 3, "timeout");
  if (!lua_isnumber(L, -1)) luaL_argerror(L, 3, "number 'timeout' field expected");
  li.l_linger = (unsigned short)tsk_num2int(lua_tonumber(L, -1));  /* LuaSocket's u_short */
  lua_pop(L, 2);
  return setraw(L, fd, SOL_SOCKET, SO_LINGER, &li, sizeof li);
}

int tsk_opt_get_linger(lua_State *L, int fd, void *obj) {
  struct linger li;
  (void)obj;
  memset(&li, 0, sizeof li);
  if (!getraw(fd, SOL_SOCKET, SO_LINGER, &li, sizeof li)) return getfailed(L);
  lua_createtable(L, 0, 2);
  lua_pushboolean(L, li.l_onoff);
  lua_setfield(L, -2, "on");
  lua_pushinteger(L, li.l_linger);
  lua_setfield(L, -2, "timeout");
  return 1;
}

/* error: the pending socket error, as LuaSocket: nil when there is none,
** else its text. */
int tsk_opt_get_error(lua_State *L, int fd, void *obj) {
  int v = 0;
  (void)obj;
  if (!getraw(fd, SOL_SOCKET, SO_ERROR, &v, sizeof v)) return getfailed(L);
  lua_pushstring(L, v == 0 ? NULL : tsk_sock_strerror(-v));
  return 1;
}

/* === handles =========================================================== */

void tsk_handle_opened(tsk_Sched *S, uv_handle_t *h) {
  S->nsockets++;
  uv_unref(h);
}

static void freeblock(uv_handle_t *h) { free(h); }

void tsk_handle_close(tsk_Sched *S, uv_handle_t *h, uv_close_cb cb) {
  if (uv_is_closing(h)) return;
  S->nsockets--;
  uv_close(h, cb ? cb : freeblock);
}

void tsk_handle_waiting(uv_handle_t *h, int waiting) {
  if (waiting) uv_ref(h);
  else uv_unref(h);
}

int tsk_handle_fd(const uv_handle_t *h) {
  uv_os_fd_t fd;  /* (uv_fileno says EBADF for a closing handle) */
  if (h == NULL || uv_fileno(h, &fd) != 0) return -1;
  return (int)fd;
}

/* === readiness (socket.select) ========================================= */

void tsk_class_ready(lua_State *L, const char *classname, const tsk_Ready *r) {
  pushclass(L, classname);
  lua_pushlightuserdata(L, (void *)(uintptr_t)r);
  lua_rawsetp(L, -2, &ready_key);
  lua_pop(L, 1);
}

const tsk_Ready *tsk_ready_of(lua_State *L, int idx) {
  const tsk_Ready *r = NULL;
  if (lua_type(L, idx) == LUA_TUSERDATA && lua_getmetatable(L, idx)) {
    if (lua_rawgetp(L, -1, &ready_key) == LUA_TLIGHTUSERDATA)
      r = (const tsk_Ready *)lua_touserdata(L, -1);
    lua_pop(L, 2);
  }
  return r;
}

void tsk_watch_link(tsk_Watch **head, tsk_Watch *w, void *obj) {
  w->obj = obj;
  w->next = *head;
  if (*head != NULL) (*head)->pprev = &w->next;
  w->pprev = head;
  *head = w;
}

void tsk_watch_unlink(tsk_Watch *w) {
  if (w->pprev == NULL) return;
  *w->pprev = w->next;
  if (w->next != NULL) w->next->pprev = w->pprev;
  w->next = NULL;
  w->pprev = NULL;
}

void tsk_watch_fire(tsk_Watch *head) {
  for (; head != NULL; head = head->next)
    if (head->t != NULL) tsk_wake(head->t, TSK_WOK, NULL, 0);
}

void tsk_watch_closeall(tsk_Watch **head) {
  tsk_Watch *w;
  while ((w = *head) != NULL) {
    tsk_watch_unlink(w);
    if (w->t != NULL) tsk_wake(w->t, TSK_WOK, NULL, 0);
  }
}
