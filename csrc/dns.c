/*
** dns.c: name resolution on libuv's thread pool, and socket.dns.
**
** Every lookup is a Req, malloc'd per call, that libuv fills on its pool,
** and a Box, a userdata pushed on the caller's stack before it waits. The
** two point at each other while both live; whichever goes first lets go:
**   - the pool finishes first: the Req is marked done and stays with the
**     Box, whose __gc (or the continuation) frees it with its results;
**   - the Box is collected first (its tasklet was killed, the state
**     closed): the Req is cancelled if it can be and frees itself in its
**     callback.
** A killed waiter only detaches (wcancel), never frees: libuv may still
** be writing into the Req.
**
** toip and tohostname use gethostbyname/gethostbyaddr, as LuaSocket does
** (their reentrant forms, on the pool), so that names, aliases and error
** words come out exactly as LuaSocket's.
*/
#define _GNU_SOURCE  /* EAI_NODATA, EAI_ADDRFAMILY, the *_r resolvers */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <netdb.h>

#include "dns.h"

enum { REQ_GAI, REQ_GNI, REQ_HOST };

typedef struct Box Box;

typedef struct Req {
  union {
    uv_req_t req;
    uv_getaddrinfo_t gai;
    uv_getnameinfo_t gni;
    uv_work_t work;
  } u;
  Box *box;               /* the Lua side, or NULL once it let go */
  tsk_Tasklet *waiter;    /* who waits for it, or NULL */
  int kind;               /* REQ_* */
  int done;               /* libuv is finished with it */
  int status;             /* 0 or a negative uv code; REQ_HOST: LuaSocket's
                             code (0, an h_errno value, an errno or <= 0) */
  struct addrinfo *ai;    /* REQ_GAI: the result */
  /* REQ_HOST */
  struct hostent he;      /* the result, pointing into buf */
  char *buf;
  int reverse;            /* by address (addr) rather than by name */
  struct in_addr addr;
  char name[1];           /* the name looked up (allocated to fit) */
} Req;

struct Box {
  Req *req;
  lua_KFunction k;        /* the caller's continuation and context */
  lua_KContext ctx;
};

/* LuaSocket's codes below h_errno's: io.h's IO_TIMEOUT, IO_CLOSED, IO_UNKNOWN. */
#define IO_UNKNOWN (-3)

/* --- requests and boxes --------------------------------------------- */

static void freereq(Req *r) {
  if (r->ai != NULL) uv_freeaddrinfo(r->ai);
  free(r->buf);
  free(r);
}

/* [-0, +1, m] Push a new box with an empty request of kind; namelen
** bytes are reserved for r->name. */
static Box *newbox(lua_State *L, int kind, size_t namelen, lua_KContext ctx,
                   lua_KFunction k) {
  Box *b = (Box *)lua_newuserdatauv(L, sizeof *b, 0);
  Req *r;
  b->req = NULL;
  b->k = k;
  b->ctx = ctx;
  luaL_setmetatable(L, TSK_ADDRINFO_MT);
  r = (Req *)calloc(1, sizeof *r + namelen);
  if (r == NULL) luaL_error(L, "not enough memory");
  r->kind = kind;
  r->box = b;
  b->req = r;
  return b;
}

/* __gc: free what the pool has finished, or let go of what it has not. */
static int box_gc(lua_State *L) {
  Box *b = (Box *)luaL_checkudata(L, 1, TSK_ADDRINFO_MT);
  Req *r = b->req;
  b->req = NULL;
  if (r == NULL) return 0;
  if (r->done || r->u.req.type == UV_UNKNOWN_REQ) freereq(r);  /* or never started */
  else {
    r->box = NULL;
    r->waiter = NULL;
    uv_cancel(&r->u.req);  /* may fail: it then frees itself when done */
  }
  return 0;
}

/* Called by libuv when r is finished (status 0, negative, or cancelled). */
static void finish(Req *r, int status) {
  tsk_Tasklet *t = r->waiter;
  r->done = 1;
  if (r->kind != REQ_HOST) r->status = status;
  else if (status < 0) r->status = IO_UNKNOWN;  /* cancelled */
  if (r->box == NULL) {  /* nobody wants it any more */
    freereq(r);
    return;
  }
  r->waiter = NULL;
  if (t != NULL) tsk_wake(t, TSK_WOK, NULL, 0);
}

/* wcancel: the waiter was killed. Its box, left on its dying stack, frees
** the request when collected; try to spare the pool the work meanwhile. */
static void reqcancel(tsk_Tasklet *t) {
  Req *r = (Req *)t->wobj;
  r->waiter = NULL;
  if (!r->done) uv_cancel(&r->u.req);
}

/*
** Continue once the request of the box on top is done: for lookups that
** failed, drop the box (t->wresult says why); then the caller's k.
*/
static int reqk(lua_State *L, int status, lua_KContext ctx) {
  Box *b = (Box *)ctx;
  Req *r = b->req;
  lua_KFunction k = b->k;
  lua_KContext kctx = b->ctx;
  tsk_Tasklet *t = tsk_self(tsk_sched(L));
  if (r->kind != REQ_HOST && r->status < 0) {
    t->wresult = r->status;
    b->req = NULL;
    freereq(r);
    lua_pop(L, 1);
  }
  else
    t->wresult = TSK_WOK;
  return k(L, status, kctx);
}

/* Wait for the request of the box on top, started just now. */
static int await(lua_State *L, tsk_Sched *S, Box *b) {
  tsk_Tasklet *t = tsk_self(S);
  b->req->waiter = t;
  t->won = TSK_ON_DNS;
  t->wobj = b->req;
  t->wcancel = reqcancel;
  return tsk_wait(L, t, -1, (lua_KContext)b, reqk);
}

/* --- error words ---------------------------------------------------- */

/* A getaddrinfo/getnameinfo EAI_* code as libuv's UV_EAI_* (or -errno). */
static int uvgaierror(int e) {
  switch (e) {
    case 0: return 0;
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY: return UV_EAI_ADDRFAMILY;
#endif
    case EAI_AGAIN: return UV_EAI_AGAIN;
    case EAI_BADFLAGS: return UV_EAI_BADFLAGS;
#ifdef EAI_BADHINTS
    case EAI_BADHINTS: return UV_EAI_BADHINTS;
#endif
#ifdef EAI_CANCELED
    case EAI_CANCELED: return UV_EAI_CANCELED;
#endif
    case EAI_FAIL: return UV_EAI_FAIL;
    case EAI_FAMILY: return UV_EAI_FAMILY;
    case EAI_MEMORY: return UV_EAI_MEMORY;
#ifdef EAI_NODATA
    case EAI_NODATA: return UV_EAI_NODATA;
#endif
    case EAI_NONAME: return UV_EAI_NONAME;
#ifdef EAI_OVERFLOW
    case EAI_OVERFLOW: return UV_EAI_OVERFLOW;
#endif
#ifdef EAI_PROTOCOL
    case EAI_PROTOCOL: return UV_EAI_PROTOCOL;
#endif
    case EAI_SERVICE: return UV_EAI_SERVICE;
    case EAI_SOCKTYPE: return UV_EAI_SOCKTYPE;
    case EAI_SYSTEM: return errno > 0 ? -errno : UV_EAI_FAIL;
    default: return UV_EAI_FAIL;
  }
}

const char *tsk_gai_strerror(int uvcode) {
  switch (uvcode) {
    case 0: return NULL;
    case UV_EAI_AGAIN: return "temporary failure in name resolution";
    case UV_EAI_BADFLAGS: return "invalid value for ai_flags";
    case UV_EAI_BADHINTS: return "invalid value for hints";
    case UV_EAI_FAIL: return "non-recoverable failure in name resolution";
    case UV_EAI_FAMILY: return "ai_family not supported";
    case UV_EAI_MEMORY: return "memory allocation failure";
    case UV_EAI_NONAME: return "host or service not provided, or not known";
    case UV_EAI_OVERFLOW: return "argument buffer overflow";
    case UV_EAI_PROTOCOL: return "resolved protocol is unknown";
    case UV_EAI_SERVICE: return "service not supported for socket type";
    case UV_EAI_SOCKTYPE: return "ai_socktype not supported";
    /* LuaSocket has no words of its own for these: the C library's */
#ifdef EAI_NODATA
    case UV_EAI_NODATA: return gai_strerror(EAI_NODATA);
#endif
#ifdef EAI_ADDRFAMILY
    case UV_EAI_ADDRFAMILY: return gai_strerror(EAI_ADDRFAMILY);
#endif
#ifdef EAI_CANCELED
    case UV_EAI_CANCELED: return gai_strerror(EAI_CANCELED);
#endif
    default:
      if (uvcode < 0 && uvcode > -4096) return strerror(-uvcode);  /* EAI_SYSTEM */
      return uv_strerror(uvcode);
  }
}

/* LuaSocket's words for a gethostbyname/gethostbyaddr failure. */
static const char *hoststrerror(int e) {
  if (e <= 0) return e == -1 ? "timeout" : e == -2 ? "closed" : "unknown error";
  if (e == HOST_NOT_FOUND) return "host not found";
  return hstrerror(e);
}

/* --- getaddrinfo ---------------------------------------------------- */

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  Req *r = (Req *)req;
  r->ai = res;
  finish(r, status);
}

/* Is host a numeric address (or empty) and serv a port number (either may
** be NULL)? Then getaddrinfo answers at once, without looking anything up. */
static int isnumeric(const char *host, const char *serv) {
  unsigned char a[sizeof(struct in6_addr)];
  if (host != NULL && host[0] != '\0' && inet_pton(AF_INET, host, a) != 1 &&
      inet_pton(AF_INET6, host, a) != 1)
    return 0;
  if (serv != NULL) {
    size_t i, n = strlen(serv);
    if (n == 0 || n > 5) return 0;
    for (i = 0; i < n; i++)
      if (serv[i] < '0' || serv[i] > '9') return 0;
  }
  return 1;
}

int tsk_getaddrinfo(lua_State *L, const char *host, const char *serv,
                    const struct addrinfo *hints, lua_KContext ctx,
                    lua_KFunction k) {
  tsk_Sched *S = tsk_sched(L);
  Box *b;
  int e;
  if (isnumeric(host, serv)) {  /* nothing to look up: at once */
    struct addrinfo h;
    if (hints != NULL) h = *hints;
    else {
      memset(&h, 0, sizeof h);
      h.ai_family = AF_UNSPEC;
    }
    h.ai_flags |= AI_NUMERICHOST | (serv != NULL ? AI_NUMERICSERV : 0);
    b = newbox(L, REQ_GAI, 0, ctx, k);
    e = getaddrinfo(host, serv, &h, &b->req->ai);
    b->req->done = 1;
    b->req->status = uvgaierror(e);
    return reqk(L, LUA_OK, (lua_KContext)b);
  }
  tsk_checkblock(L, S);
  b = newbox(L, REQ_GAI, 0, ctx, k);
  e = uv_getaddrinfo(S->loop, &b->req->u.gai, gai_cb, host, serv, hints);
  if (e != 0) {
    b->req->done = 1;
    /* libuv refuses names it cannot turn into IDNA ASCII: unknown names */
    b->req->status = e == UV_EINVAL && host != NULL ? UV_EAI_NONAME : e;
    return reqk(L, LUA_OK, (lua_KContext)b);
  }
  return await(L, S, b);
}

struct addrinfo *tsk_addrinfo_get(lua_State *L, int idx) {
  Box *b = (Box *)luaL_checkudata(L, idx, TSK_ADDRINFO_MT);
  return b->req != NULL && b->req->done ? b->req->ai : NULL;
}

void tsk_addrinfo_free(lua_State *L, int idx) {
  Box *b = (Box *)luaL_checkudata(L, idx, TSK_ADDRINFO_MT);
  if (b->req != NULL && b->req->done) {
    freereq(b->req);
    b->req = NULL;
  }
}

/* --- getnameinfo ---------------------------------------------------- */

static void gni_cb(uv_getnameinfo_t *req, int status, const char *host,
                   const char *serv) {
  (void)host; (void)serv;  /* they are in req */
  finish((Req *)req, status);
}

/* Like tsk_getaddrinfo for getnameinfo(sa, flags): in k, the box on top
** holds the request, whose u.gni.host and u.gni.service are the result. */
static int getnameinfo_k(lua_State *L, const struct sockaddr *sa, int flags,
                         lua_KContext ctx, lua_KFunction k) {
  tsk_Sched *S = tsk_sched(L);
  Box *b;
  int e;
  tsk_checkblock(L, S);
  b = newbox(L, REQ_GNI, 0, ctx, k);
  e = uv_getnameinfo(S->loop, &b->req->u.gni, gni_cb, sa, flags);
  if (e != 0) {
    b->req->done = 1;
    b->req->status = e;
    return reqk(L, LUA_OK, (lua_KContext)b);
  }
  return await(L, S, b);
}

/* --- gethostbyname / gethostbyaddr ---------------------------------- */

/* On the pool: fill r->he as LuaSocket's inet_gethost would. */
static void host_work(uv_work_t *w) {
  Req *r = (Req *)w;
  struct hostent *res = NULL;
  size_t len = 1024;
  int rc, herr = 0;
  for (;;) {
    char *nb = (char *)realloc(r->buf, len);
    if (nb == NULL) { rc = ENOMEM; break; }
    r->buf = nb;
    herr = 0;
    if (r->reverse)
      rc = gethostbyaddr_r(&r->addr, sizeof r->addr, AF_INET, &r->he, r->buf,
                           len, &res, &herr);
    else
      rc = gethostbyname_r(r->name, &r->he, r->buf, len, &res, &herr);
    if (rc != ERANGE || len >= (1u << 20)) break;
    len *= 2;
  }
  if (res != NULL) r->status = 0;
  else if (herr != 0) r->status = herr;
  else if (rc != 0) r->status = rc;
  else r->status = IO_UNKNOWN;
}

static void host_done(uv_work_t *w, int status) {
  finish((Req *)w, status);
}

/* [-0, +1] Push LuaSocket's table {name=, alias={...}, ip={...}} for he. */
static void pushresolved(lua_State *L, const struct hostent *he) {
  char ip[INET6_ADDRSTRLEN];
  int i;
  lua_createtable(L, 0, 3);
  lua_pushstring(L, he->h_name);
  lua_setfield(L, -2, "name");
  lua_newtable(L);
  for (i = 0; he->h_aliases != NULL && he->h_aliases[i] != NULL; i++) {
    lua_pushstring(L, he->h_aliases[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "alias");
  lua_newtable(L);
  for (i = 0; he->h_addr_list != NULL && he->h_addr_list[i] != NULL; i++) {
    if (inet_ntop(he->h_addrtype, he->h_addr_list[i], ip, sizeof ip) == NULL)
      continue;
    lua_pushstring(L, ip);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  }
  lua_setfield(L, -2, "ip");
}

/* ctx: 1 for tohostname (the name first), 0 for toip (the address). */
static int hostk(lua_State *L, int status, lua_KContext ctx) {
  Box *b = (Box *)lua_touserdata(L, -1);
  Req *r = b->req;
  (void)status;
  if (r->status != 0) return tsk_fail(L, hoststrerror(r->status));
  if (ctx) lua_pushstring(L, r->he.h_name);
  else {
    char ip[INET6_ADDRSTRLEN];
    if (r->he.h_addr_list == NULL || r->he.h_addr_list[0] == NULL ||
        inet_ntop(r->he.h_addrtype, r->he.h_addr_list[0], ip, sizeof ip) == NULL)
      return tsk_fail(L, hoststrerror(NO_DATA));
    lua_pushstring(L, ip);
  }
  pushresolved(L, &r->he);
  return 2;
}

/* toip/tohostname: look the argument up by address if inet_aton takes
** it, else by name, on the pool. */
static int hostlookup(lua_State *L, int byname) {
  tsk_Sched *S = tsk_upsched(L);
  size_t len;
  const char *name = luaL_checklstring(L, 1, &len);
  Box *b;
  Req *r;
  int e;
  lua_settop(L, 1);
  tsk_checkblock(L, S);
  b = newbox(L, REQ_HOST, len, byname, hostk);
  r = b->req;
  memcpy(r->name, name, len + 1);
  r->reverse = inet_aton(name, &r->addr) != 0;
  e = uv_queue_work(S->loop, &r->u.work, host_work, host_done);
  if (e != 0) {
    r->done = 1;
    r->status = IO_UNKNOWN;
    return reqk(L, LUA_OK, (lua_KContext)b);
  }
  return await(L, S, b);
}

/* dns.toip(name): ip, resolved | nil, err */
static int global_toip(lua_State *L) { return hostlookup(L, 0); }

/* dns.tohostname(addr): name, resolved | nil, err */
static int global_tohostname(lua_State *L) { return hostlookup(L, 1); }

/* --- socket.dns ----------------------------------------------------- */

static const char *familyname(int family) {
  switch (family) {
    case AF_INET: return "inet";
    case AF_INET6: return "inet6";
    case AF_UNSPEC: return "unspec";
    default: return "unknown";
  }
}

static int getaddrinfok(lua_State *L, int status, lua_KContext ctx) {
  tsk_Tasklet *t = tsk_self(tsk_upsched(L));
  struct addrinfo *ai;
  lua_Integer i = 1;
  (void)status; (void)ctx;
  if (t->wresult != 0) return tsk_fail(L, tsk_gai_strerror(t->wresult));
  lua_newtable(L);                                    /* box result */
  for (ai = tsk_addrinfo_get(L, -2); ai != NULL; ai = ai->ai_next, i++) {
    char host[NI_MAXHOST];
    int e = getnameinfo(ai->ai_addr, (socklen_t)ai->ai_addrlen, host,
                        sizeof host, NULL, 0, NI_NUMERICHOST);
    if (e != 0) return tsk_fail(L, tsk_gai_strerror(uvgaierror(e)));
    lua_createtable(L, 0, 2);
    lua_pushstring(L, familyname(ai->ai_family));
    lua_setfield(L, -2, "family");
    lua_pushstring(L, host);
    lua_setfield(L, -2, "addr");
    lua_rawseti(L, -2, i);
  }
  return 1;
}

/* dns.getaddrinfo(host): {{family=, addr=}, ...} | nil, err */
static int global_getaddrinfo(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  struct addrinfo hints;
  lua_settop(L, 1);
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  return tsk_getaddrinfo(L, host, NULL, &hints, 0, getaddrinfok);
}

/*
** dns.getnameinfo(host, serv): looks host/serv up, then names each
** address found, one request at a time. Stack: host serv aibox names
** [gnibox]; ctx is the address being named.
*/
#define GNI_HOST  1
#define GNI_SERV  2
#define GNI_NAMES 4

static int getnameinfonext(lua_State *L, const struct addrinfo *ai);

static int getnameinfok2(lua_State *L, int status, lua_KContext ctx) {
  const struct addrinfo *ai = (const struct addrinfo *)ctx;
  Req *r = ((Box *)lua_touserdata(L, -1))->req;
  int hashost = !lua_isnil(L, GNI_HOST);
  (void)status;
  if (hashost) {
    char num[NI_MAXHOST];
    const char *name = r->u.gni.host;
    if (r->status != 0) {  /* LuaSocket ignores the failure: say something */
      if (getnameinfo(ai->ai_addr, (socklen_t)ai->ai_addrlen, num, sizeof num,
                      NULL, 0, NI_NUMERICHOST) != 0)
        num[0] = '\0';
      name = num;
    }
    lua_pushstring(L, name);
    lua_rawseti(L, GNI_NAMES, (lua_Integer)lua_rawlen(L, GNI_NAMES) + 1);
    if (ai->ai_next != NULL) {
      lua_pop(L, 1);
      return getnameinfonext(L, ai->ai_next);
    }
  }
  lua_pushvalue(L, GNI_NAMES);
  if (lua_isnil(L, GNI_SERV)) return 1;
  lua_pushstring(L, r->status == 0 ? r->u.gni.service : "");
  return 2;
}

/* Name ai's address (only its service when no host was asked for). */
static int getnameinfonext(lua_State *L, const struct addrinfo *ai) {
  int flags = lua_isnil(L, GNI_HOST) ? NI_NUMERICHOST : 0;
  return getnameinfo_k(L, ai->ai_addr, flags, (lua_KContext)ai, getnameinfok2);
}

static int getnameinfok1(lua_State *L, int status, lua_KContext ctx) {
  tsk_Tasklet *t = tsk_self(tsk_upsched(L));
  const struct addrinfo *ai;
  (void)status; (void)ctx;
  if (t->wresult != 0) return tsk_fail(L, tsk_gai_strerror(t->wresult));
  lua_newtable(L);                                    /* host serv box names */
  ai = tsk_addrinfo_get(L, 3);
  if (lua_isnil(L, GNI_HOST))  /* LuaSocket keeps the last address's service */
    while (ai->ai_next != NULL) ai = ai->ai_next;
  return getnameinfonext(L, ai);
}

/* dns.getnameinfo(host, serv): {names...}[, service] | nil, err */
static int global_getnameinfo(lua_State *L) {
  const char *host = luaL_optstring(L, 1, NULL);
  const char *serv = luaL_optstring(L, 2, NULL);
  struct addrinfo hints;
  if (host == NULL && serv == NULL)
    return luaL_error(L, "host and serv cannot be both nil");
  lua_settop(L, 2);
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  return tsk_getaddrinfo(L, host, serv, &hints, 0, getnameinfok1);
}

/* dns.gethostname(): name | nil, err */
static int global_gethostname(lua_State *L) {
  char name[UV_MAXHOSTNAMESIZE];
  size_t size = sizeof name;
  int e = uv_os_gethostname(name, &size);
  if (e != 0) return tsk_fail(L, e > -4096 ? strerror(-e) : uv_strerror(e));
  lua_pushstring(L, name);
  return 1;
}

void tsk_dns_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"toip", global_toip},
    {"tohostname", global_tohostname},
    {"getaddrinfo", global_getaddrinfo},
    {"getnameinfo", global_getnameinfo},
    {"gethostname", global_gethostname},
    {NULL, NULL}
  };
  tsk_Sched *S = tsk_sched(L);
  if (luaL_newmetatable(L, TSK_ADDRINFO_MT)) {
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, "tasksock.addrinfo");
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
  lua_newtable(L);
  tsk_setfuncs(L, S, funcs);
  lua_setfield(L, -2, "dns");
}
