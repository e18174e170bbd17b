/*
** copy_fuzz.c: libFuzzer target for value copying between states (copy.c).
**
** The input is the data of a message, taken as it is. In a fresh
** lua_State, inside a protected call, tsk_copy_decodebuf must either
** raise "invalid message (...)" or push exactly the values it returns.
** Whatever it decodes must then round-trip: tsk_copy_encode of those
** values must succeed, and decoding that message must give equal values
** (same types, integers and floats apart, same bytes, and the same sharing
** of tables). Two real xchannels are offered to the decoder, so references
** to them decode too.
**
** The C decoder for plain values, tsk_msg_tovalue, is checked against the
** Lua one: on a message of one value (count byte 1) it must accept exactly
** the nil, boolean, number and string messages tsk_copy_decodebuf accepts,
** with the same value.
**
** Any difference prints what happened and aborts.
*/
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "../csrc/copy.h"

#define NCH 2
static tsk_XChannel *xch[NCH];   /* live for the whole run */
static int verbose;              /* COPY_FUZZ_VERBOSE set: say what decoded */

static void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

static void fail(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "\ncopy_fuzz: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  abort();
}

#define check(cond, ...) ((cond) ? (void)0 : fail(__VA_ARGS__))

/* === protected steps =================================================== */

typedef struct Job {
  const unsigned char *p;
  size_t len;
  tsk_Msg *m;
  int n;
} Job;

/* (job) -> the decoded values */
static int l_decode(lua_State *L) {
  Job *j = (Job *)lua_touserdata(L, 1);
  int top;
  lua_settop(L, 0);
  top = lua_gettop(L);
  j->n = tsk_copy_decodebuf(L, j->p, j->len, xch, NCH);
  check(j->n >= 0, "tsk_copy_decodebuf returned %d", j->n);
  check(lua_gettop(L) - top == j->n, "tsk_copy_decodebuf returned %d but pushed %d values",
        j->n, lua_gettop(L) - top);
  return j->n;
}

/* (job, values...) -> nothing; j->m gets the message */
static int l_encode(lua_State *L) {
  Job *j = (Job *)lua_touserdata(L, 1);
  int top = lua_gettop(L);
  j->m = tsk_copy_encode(L, 2, top - 1, 0, "value");
  check(lua_gettop(L) == top, "tsk_copy_encode changed the stack");
  check(j->m->nvals == top - 1, "tsk_copy_encode: nvals %d for %d values",
        j->m->nvals, top - 1);
  return 0;
}

/* (job) -> the values of j->m */
static int l_redecode(lua_State *L) {
  Job *j = (Job *)lua_touserdata(L, 1);
  lua_settop(L, 0);
  j->n = tsk_copy_decode(L, j->m);
  check(lua_gettop(L) == j->n, "tsk_copy_decode returned %d but pushed %d values",
        j->n, lua_gettop(L));
  return j->n;
}

/* === equality ========================================================== */

/*
** Are the values at a and b equal, tables compared by content? mab and
** mba (stack indexes of two tables) hold the pairing of tables found so
** far, which must stay one to one: a table shared in one graph is shared
** at the same places in the other. Entries whose key is a table are only
** counted here (matching them would need a search); digest() covers them.
*/
static int equal(lua_State *L, int a, int b, int mab, int mba, int depth);

static int equaltables(lua_State *L, int a, int b, int mab, int mba, int depth) {
  int na = 0, nb = 0, ka = 0, kb = 0, ok = 1;
  lua_pushvalue(L, a);
  if (lua_rawget(L, mab) != LUA_TNIL) {  /* paired already: with b? */
    ok = lua_rawequal(L, -1, b);
    lua_pop(L, 1);
    return ok;
  }
  lua_pop(L, 1);
  lua_pushvalue(L, b);
  if (lua_rawget(L, mba) != LUA_TNIL) {  /* b is paired with another */
    lua_pop(L, 1);
    return 0;
  }
  lua_pop(L, 1);
  lua_pushvalue(L, a);
  lua_pushvalue(L, b);
  lua_rawset(L, mab);
  lua_pushvalue(L, b);
  lua_pushvalue(L, a);
  lua_rawset(L, mba);
  if (depth > 300) fail("tables nested deeper than the decoder allows");
  luaL_checkstack(L, 8, "equal");
  lua_pushnil(L);
  while (ok && lua_next(L, a)) {                 /* key value */
    int top = lua_gettop(L);
    na++;
    if (lua_type(L, top - 1) == LUA_TTABLE) ka++;
    else {
      lua_pushvalue(L, top - 1);
      if (lua_rawget(L, b) == LUA_TNIL) ok = 0;  /* key value bvalue */
      else ok = equal(L, top, top + 1, mab, mba, depth + 1);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  if (!ok) {
    lua_pop(L, 1);  /* the key lua_next left */
    return 0;
  }
  lua_pushnil(L);
  while (lua_next(L, b)) {
    nb++;
    if (lua_type(L, -2) == LUA_TTABLE) kb++;
    lua_pop(L, 1);
  }
  return na == nb && ka == kb;
}

static int equal(lua_State *L, int a, int b, int mab, int mba, int depth) {
  int t = lua_type(L, a);
  if (t != lua_type(L, b)) return 0;
  switch (t) {
    case LUA_TNIL: return 1;
    case LUA_TBOOLEAN: return lua_toboolean(L, a) == lua_toboolean(L, b);
    case LUA_TNUMBER:
      if (lua_isinteger(L, a) != lua_isinteger(L, b)) return 0;
      if (lua_isinteger(L, a)) return lua_tointeger(L, a) == lua_tointeger(L, b);
      else {
        lua_Number x = lua_tonumber(L, a), y = lua_tonumber(L, b);
        return memcmp(&x, &y, sizeof x) == 0;  /* NaN, -0.0: the bits */
      }
    case LUA_TSTRING: {
      size_t la, lb;
      const char *sa = lua_tolstring(L, a, &la), *sb = lua_tolstring(L, b, &lb);
      return la == lb && memcmp(sa, sb, la) == 0;
    }
    case LUA_TUSERDATA: {
      tsk_XChannel *x = tsk_xchannel_test(L, a);
      return x != NULL && x == tsk_xchannel_test(L, b);
    }
    case LUA_TTABLE: return equaltables(L, a, b, mab, mba, depth);
    default:
      fail("decoding produced a %s", lua_typename(L, t));
  }
}

/*
** An order- and identity-free digest of the graph of values at first..
** (n of them): the top-level values in order, plus the sum over every
** distinct table of a digest of its entries, each entry summarized by the
** types and contents of its key and value (a table counts as "a table").
** Each table is digested on its own and the results are summed, so the
** order in which lua_next meets shared tables (which follows string
** hashes, seeded per state) cannot change the result. seen is the stack
** index of a table of the tables visited.
*/
static uint64_t mix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdu;
  h ^= h >> 33;
  return h;
}

static uint64_t leaf(lua_State *L, int i) {
  int t = lua_type(L, i);
  uint64_t h = (uint64_t)t * 0x9e3779b97f4a7c15u;
  size_t k, len;
  const char *s;
  switch (t) {
    case LUA_TBOOLEAN: return mix(h + (uint64_t)lua_toboolean(L, i));
    case LUA_TNUMBER:
      if (lua_isinteger(L, i)) return mix(h + 1 + (uint64_t)lua_tointeger(L, i));
      else {
        lua_Number x = lua_tonumber(L, i);
        uint64_t bits;
        memcpy(&bits, &x, sizeof bits);
        return mix(h + 2 + bits);
      }
    case LUA_TSTRING:
      s = lua_tolstring(L, i, &len);
      for (k = 0; k < len; k++) h = (h ^ (unsigned char)s[k]) * 1099511628211u;
      return mix(h + len);
    case LUA_TUSERDATA: return mix(h + (uint64_t)(uintptr_t)tsk_xchannel_test(L, i));
    default: return mix(h);
  }
}

/* Add the digest of the table at i, and of every table it reaches, to
** *sum, once per table. */
static void digestvalue(lua_State *L, int i, int seen, uint64_t *sum) {
  uint64_t d = 0;
  if (lua_type(L, i) != LUA_TTABLE) return;
  lua_pushvalue(L, i);
  if (lua_rawget(L, seen) != LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  lua_pushvalue(L, i);
  lua_pushboolean(L, 1);
  lua_rawset(L, seen);
  luaL_checkstack(L, 8, "digest");
  lua_pushnil(L);
  while (lua_next(L, i)) {
    int top = lua_gettop(L);
    d += mix(leaf(L, top - 1) * 31 + leaf(L, top));
    digestvalue(L, top - 1, seen, sum);
    digestvalue(L, top, seen, sum);
    lua_pop(L, 1);
  }
  *sum += mix(d + 0x51ed);
}

static uint64_t digest(lua_State *L, int first, int n) {
  uint64_t d = 0, tables = 0;
  int i, seen;
  lua_newtable(L);
  seen = lua_gettop(L);
  for (i = 0; i < n; i++) {
    d = d * 1000003u + leaf(L, first + i);
    digestvalue(L, first + i, seen, &tables);
  }
  lua_pop(L, 1);
  return d + mix(tables);
}

/* === the C decoder against the Lua one ================================= */

static void checktovalue(lua_State *L, const uint8_t *data, size_t size, int ok, int n) {
  tsk_Msg m;
  tsk_Value v;
  int r, plain;
  if (size == 0 || data[0] != 1) return;  /* tovalue takes one value, plainly counted */
  memset(&m, 0, sizeof m);
  m.len = size;
  m.nvals = 1;
  m.data = (unsigned char *)(uintptr_t)data;
  r = tsk_msg_tovalue(&m, &v);
  plain = ok && n == 1 && lua_type(L, 1) != LUA_TTABLE && lua_type(L, 1) != LUA_TUSERDATA;
  if (r != 0) {
    check(!plain, "tsk_msg_tovalue rejects (%d) a plain value tsk_copy_decodebuf accepts (%s)",
          r, luaL_typename(L, 1));
    return;
  }
  check(plain, "tsk_msg_tovalue accepts a message tsk_copy_decodebuf %s",
        ok ? "decodes to something else" : "rejects");
  switch (v.type) {
    case TSK_VNIL: check(lua_isnil(L, 1), "tovalue: nil, Lua: %s", luaL_typename(L, 1)); break;
    case TSK_VBOOLEAN:
      check(lua_isboolean(L, 1) && lua_toboolean(L, 1) == (v.boolean != 0),
            "tovalue: boolean %d differs", v.boolean);
      break;
    case TSK_VINTEGER:
      check(lua_isinteger(L, 1) && lua_tointeger(L, 1) == v.integer,
            "tovalue: integer %lld differs", v.integer);
      break;
    case TSK_VNUMBER: {
      lua_Number x = lua_tonumber(L, 1);
      check(lua_type(L, 1) == LUA_TNUMBER && !lua_isinteger(L, 1) &&
            memcmp(&x, &v.number, sizeof x) == 0, "tovalue: float %g differs", v.number);
      break;
    }
    case TSK_VSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, 1, &len);
      check(lua_type(L, 1) == LUA_TSTRING && len == v.len && memcmp(s, v.string, len) == 0 &&
            v.string[len] == '\0', "tovalue: string of %zu bytes differs", v.len);
      break;
    }
    default: fail("tsk_msg_tovalue: type %d", (int)v.type);
  }
  tsk_value_free(&v);
}

/* === the target ======================================================== */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  int i;
  (void)argc;
  (void)argv;
  verbose = getenv("COPY_FUZZ_VERBOSE") != NULL;
  for (i = 0; i < NCH; i++)
    if ((xch[i] = tsk_xchannel_new((size_t)i)) == NULL) abort();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Job j;
  int st, n, mab, mba;
  uint64_t d1, d2;
  lua_State *L = luaL_newstate();
  if (L == NULL) abort();
  luaL_openlibs(L);
  memset(&j, 0, sizeof j);
  j.p = data;
  j.len = size;
  lua_pushcfunction(L, l_decode);
  lua_pushlightuserdata(L, &j);
  st = lua_pcall(L, 1, LUA_MULTRET, 0);
  if (st != LUA_OK) {  /* rejected: with the documented error, nothing else */
    const char *msg = lua_tostring(L, -1);
    check(st == LUA_ERRRUN || st == LUA_ERRMEM, "decoding failed with status %d", st);
    check(st == LUA_ERRMEM || (msg != NULL && strncmp(msg, "invalid message (", 17) == 0),
          "decoding raised an unexpected error: %s", msg ? msg : "(not a string)");
    check(lua_gettop(L) == 1, "decoding left %d values after an error", lua_gettop(L));
    if (verbose) fprintf(stderr, "copy_fuzz: rejected: %s\n", msg);
    lua_settop(L, 0);
    checktovalue(L, data, size, 0, 0);
    lua_close(L);
    return 0;
  }
  n = lua_gettop(L);
  check(n == j.n, "decoding returned %d values but the call gave %d", j.n, n);
  /* room for a copy of them plus a few (Debian's Lua checks no API use:
  ** a push beyond the stack would corrupt its heap unseen by ASan) */
  check(lua_checkstack(L, n + 8), "no stack for %d values", n);
  checktovalue(L, data, size, 1, n);
  /* round trip: encode what was decoded, decode that, compare */
  d1 = digest(L, 1, n);
  lua_pushcfunction(L, l_encode);
  lua_pushlightuserdata(L, &j);
  for (st = 1; st <= n; st++) lua_pushvalue(L, st);
  st = lua_pcall(L, n + 1, 0, 0);
  if (st == LUA_ERRMEM) {
    lua_close(L);
    return 0;
  }
  check(st == LUA_OK, "re-encoding decoded values failed: %s", lua_tostring(L, -1));
  lua_pushcfunction(L, l_redecode);
  lua_pushlightuserdata(L, &j);
  st = lua_pcall(L, 1, LUA_MULTRET, 0);
  check(st == LUA_OK, "decoding a message tsk_copy_encode made failed: %s",
        lua_tostring(L, -1));
  check(lua_gettop(L) == 2 * n, "the round trip gave %d values instead of %d",
        lua_gettop(L) - n, n);
  check(lua_checkstack(L, 8), "no stack to compare");
  d2 = digest(L, n + 1, n);
  check(d1 == d2, "the round trip changed the values (digest %016llx, then %016llx)",
        (unsigned long long)d1, (unsigned long long)d2);
  lua_newtable(L);
  mab = lua_gettop(L);
  lua_newtable(L);
  mba = lua_gettop(L);
  for (st = 1; st <= n; st++)
    check(equal(L, st, n + st, mab, mba, 0), "the round trip changed value %d (a %s)",
          st, luaL_typename(L, st));
  if (verbose) fprintf(stderr, "copy_fuzz: %d values, re-encoded in %zu bytes\n", n, j.m->len);
  tsk_msg_free(j.m);
  lua_close(L);
  return 0;
}
