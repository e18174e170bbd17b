/*
** copy.c: encode Lua values into a flat message and decode them in
** another state (see copy.h for what can be copied).
**
** Format: varint count, then count values. A value is a tag byte and:
**   NIL FALSE TRUE            nothing
**   INT, FLT                  8 bytes, native order (same process)
**   STR                       varint length, the bytes
**   TABLE                     u32 narr, u32 nhash, narr values (t[1..narr],
**                             NIL for a hole), nhash key/value pairs
**   REF                       varint: a finished table, by order of TABLE
**   XCH                       varint: index in the message's xchannels
** While encoding, the growing buffer is a Lua userdata and the bookkeeping
** is Lua tables on the stack, so an error (a bad value, memory) leaves
** nothing to free; only the finished message is malloc'd.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "xwait.h"

enum { T_NIL, T_FALSE, T_TRUE, T_INT, T_FLT, T_STR, T_TABLE, T_REF, T_XCH };

#if defined(__GNUC__)
#define NORETURN __attribute__((noreturn))
#else
#define NORETURN
#endif

/* --- encoding ------------------------------------------------------- */

typedef struct PathItem {
  int kidx;          /* stack index of the key, or 0: the integer ki */
  lua_Integer ki;
  int askey;         /* the key itself is being encoded */
} PathItem;

typedef struct Enc {
  lua_State *L;
  unsigned char *p;
  size_t n, cap;
  int buf, seen, chans;      /* stack slots: buffer userdata, tables seen,
                                xchannels met */
  int ntables, nch, depth;
  const char *root;
  int rooti;                 /* index in root[] when several values, or 0 */
  PathItem path[TSK_COPY_MAXDEPTH + 1];
  unsigned char inl[256];
} Enc;

static void grow(Enc *E, size_t need) {
  lua_State *L = E->L;
  size_t cap = E->cap;
  unsigned char *np;
  while (cap - E->n < need) {
    if (cap > ((size_t)-1) / 4) luaL_error(L, "message too large");
    cap *= 2;
  }
  np = (unsigned char *)lua_newuserdatauv(L, cap, 0);
  memcpy(np, E->p, E->n);
  lua_replace(L, E->buf);  /* the old one becomes garbage */
  E->p = np;
  E->cap = cap;
}

#define need(E, k) ((E)->cap - (E)->n < (k) ? grow((E), (k)) : (void)0)

static void put1(Enc *E, int c) {
  need(E, 1);
  E->p[E->n++] = (unsigned char)c;
}

static void putmem(Enc *E, const void *s, size_t k) {
  need(E, k);
  memcpy(E->p + E->n, s, k);
  E->n += k;
}

static void putvarint(Enc *E, uint64_t v) {
  need(E, 10);
  while (v >= 0x80) {
    E->p[E->n++] = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  E->p[E->n++] = (unsigned char)v;
}

static void putu32at(Enc *E, size_t at, uint32_t v) {
  int i;
  for (i = 0; i < 4; i++) E->p[at + i] = (unsigned char)(v >> (8 * i));
}

/* Push the quoted form of the string at idx, shortened if long. */
static void pushquoted(lua_State *L, int idx) {
  size_t len, i;
  const char *s = lua_tolstring(L, idx, &len);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addchar(&b, '"');
  for (i = 0; i < len && i < 40; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      luaL_addchar(&b, '\\');
      luaL_addchar(&b, (char)c);
    }
    else if (c < 32 || c >= 127) {
      char esc[8];
      int k = 0, v = c;
      esc[k++] = '\\';
      esc[k++] = (char)('0' + v / 100);
      esc[k++] = (char)('0' + v / 10 % 10);
      esc[k++] = (char)('0' + v % 10);
      luaL_addlstring(&b, esc, (size_t)k);
    }
    else
      luaL_addchar(&b, (char)c);
  }
  if (i < len) luaL_addstring(&b, "...");
  luaL_addchar(&b, '"');
  luaL_pushresult(&b);
}

static int isname(const char *s, size_t len) {
  static const char *const reserved[] = {
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function",
    "goto", "if", "in", "local", "nil", "not", "or", "repeat", "return", "then",
    "true", "until", "while", NULL
  };
  size_t i;
  int k;
  if (len == 0 || len > 40) return 0;
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return 0;
  }
  for (k = 0; reserved[k]; k++)
    if (strcmp(s, reserved[k]) == 0) return 0;
  return 1;
}

/* Push the path segment for item it: ".name", "[3]", "[\"a b\"]"... */
static void pushsegment(lua_State *L, const PathItem *it) {
  int k = it->kidx;
  if (k == 0) {
    lua_pushfstring(L, "[%I]", (LUAI_UACINT)it->ki);
    return;
  }
  switch (lua_type(L, k)) {
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, k, &len);
      if (isname(s, len)) lua_pushfstring(L, ".%s", s);
      else {
        lua_pushliteral(L, "[");
        pushquoted(L, k);
        lua_pushliteral(L, "]");
        lua_concat(L, 3);
      }
      break;
    }
    case LUA_TNUMBER:
      if (lua_isinteger(L, k)) lua_pushfstring(L, "[%I]", (LUAI_UACINT)lua_tointeger(L, k));
      else lua_pushfstring(L, "[%f]", (LUAI_UACNUMBER)lua_tonumber(L, k));
      break;
    case LUA_TBOOLEAN:
      lua_pushstring(L, lua_toboolean(L, k) ? "[true]" : "[false]");
      break;
    case LUA_TUSERDATA:
      lua_pushliteral(L, "[xchannel]");
      break;
    default:
      lua_pushfstring(L, "[%s]", luaL_typename(L, k));
  }
}

static NORETURN void fail(Enc *E, const char *what);

/* Raise "cannot send <what> (at <path>)" for the value being encoded. */
static void fail(Enc *E, const char *what) {
  lua_State *L = E->L;
  int d, depth = E->depth, askey = 0, n;
  lua_checkstack(L, TSK_COPY_MAXDEPTH + 10);
  for (d = 0; d < depth; d++)
    if (E->path[d].askey) {  /* the bad value is (inside) a key */
      askey = 1;
      depth = d;
      break;
    }
  luaL_where(L, 1);
  lua_pushfstring(L, "cannot send %s%s (at %s", what,
                  askey ? " in a table key" : "", E->root);
  if (E->rooti > 0) lua_pushfstring(L, "[%d]", E->rooti);
  else lua_pushliteral(L, "");
  n = 3;
  for (d = 0; d < depth; d++, n++) pushsegment(L, &E->path[d]);
  lua_pushliteral(L, ")");
  lua_concat(L, n + 1);
  lua_error(L);
  for (;;) {}  /* not reached */
}

static void enc_value(Enc *E, int idx);

static void enc_table(Enc *E, int idx) {
  lua_State *L = E->L;
  lua_Integer narr, i;
  uint32_t nh = 0;
  size_t at;
  int d, id;
  if (E->depth >= TSK_COPY_MAXDEPTH) fail(E, "a table nested too deeply");
  if (!lua_checkstack(L, 6)) luaL_error(L, "stack overflow while copying");
  if (E->seen == 0 || lua_isnil(L, E->seen)) {
    lua_newtable(L);
    lua_replace(L, E->seen);
  }
  lua_pushvalue(L, idx);
  if (lua_rawget(L, E->seen) == LUA_TNUMBER) {
    lua_Integer ref = lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (ref < 0) fail(E, "a table with a cycle");
    put1(E, T_REF);
    putvarint(E, (uint64_t)ref);
    return;
  }
  lua_pop(L, 1);
  id = E->ntables++;
  lua_pushvalue(L, idx);
  lua_pushinteger(L, -(lua_Integer)id - 1);  /* open: a ref to it is a cycle */
  lua_rawset(L, E->seen);
  narr = (lua_Integer)lua_rawlen(L, idx);
  if (narr > 0x7fffffff) fail(E, "a table too large");
  put1(E, T_TABLE);
  need(E, 8);
  putu32at(E, E->n, (uint32_t)narr);
  at = E->n + 4;
  E->n += 8;
  d = E->depth++;
  for (i = 1; i <= narr; i++) {
    E->path[d].kidx = 0;
    E->path[d].ki = i;
    E->path[d].askey = 0;
    lua_rawgeti(L, idx, i);
    enc_value(E, lua_gettop(L));
    lua_pop(L, 1);
  }
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int top = lua_gettop(L);
    if (lua_isinteger(L, top - 1)) {
      lua_Integer k = lua_tointeger(L, top - 1);
      if (k >= 1 && k <= narr) {  /* done in the array part */
        lua_pop(L, 1);
        continue;
      }
    }
    E->path[d].kidx = top - 1;
    E->path[d].askey = 1;
    enc_value(E, top - 1);
    E->path[d].askey = 0;
    enc_value(E, top);
    lua_pop(L, 1);
    nh++;
  }
  putu32at(E, at, nh);
  E->depth--;
  lua_pushvalue(L, idx);
  lua_pushinteger(L, id);
  lua_rawset(L, E->seen);
}

static void enc_xch(Enc *E, int idx) {
  lua_State *L = E->L;
  lua_Integer i;
  if (!lua_checkstack(L, 4)) luaL_error(L, "stack overflow while copying");
  if (lua_isnil(L, E->chans)) {
    lua_newtable(L);
    lua_replace(L, E->chans);
  }
  lua_pushvalue(L, idx);
  if (lua_rawget(L, E->chans) == LUA_TNUMBER) i = lua_tointeger(L, -1);
  else {
    i = E->nch++;
    lua_pushvalue(L, idx);
    lua_pushinteger(L, i);
    lua_rawset(L, E->chans);      /* chans[ud] = i */
    lua_pushvalue(L, idx);
    lua_rawseti(L, E->chans, i + 1);  /* chans[i + 1] = ud */
  }
  lua_pop(L, 1);
  put1(E, T_XCH);
  putvarint(E, (uint64_t)i);
}

static void enc_value(Enc *E, int idx) {
  lua_State *L = E->L;
  switch (lua_type(L, idx)) {
    case LUA_TNIL: put1(E, T_NIL); break;
    case LUA_TBOOLEAN: put1(E, lua_toboolean(L, idx) ? T_TRUE : T_FALSE); break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        lua_Integer v = lua_tointeger(L, idx);
        put1(E, T_INT);
        putmem(E, &v, sizeof v);
      }
      else {
        lua_Number v = lua_tonumber(L, idx);
        put1(E, T_FLT);
        putmem(E, &v, sizeof v);
      }
      break;
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      put1(E, T_STR);
      putvarint(E, len);
      putmem(E, s, len);
      break;
    }
    case LUA_TTABLE: enc_table(E, idx); break;
    case LUA_TUSERDATA:
      if (tsk_xchannel_test(L, idx) != NULL) enc_xch(E, idx);
      else fail(E, "a userdata");
      break;
    case LUA_TLIGHTUSERDATA: fail(E, "a light userdata"); break;
    case LUA_TFUNCTION: fail(E, "a function"); break;
    case LUA_TTHREAD: fail(E, "a coroutine"); break;
    default: fail(E, "a value of unknown type");
  }
}

tsk_Msg *tsk_copy_encode(lua_State *L, int first, int n, int skip,
                         const char *root) {
  Enc *E;
  tsk_Msg *m;
  int i, base;
  size_t size;
  first = lua_absindex(L, first);
  base = lua_gettop(L);
  luaL_checkstack(L, 8, "too many values to copy");
  /* the state is big (path, inline buffer): keep it in a userdata too */
  E = (Enc *)lua_newuserdatauv(L, sizeof *E, 0);
  E->L = L;
  E->p = E->inl;
  E->n = 0;
  E->cap = sizeof E->inl;
  E->ntables = E->nch = E->depth = 0;
  E->root = root;
  lua_pushnil(L);
  E->buf = lua_gettop(L);
  lua_pushnil(L);
  E->seen = lua_gettop(L);
  lua_pushnil(L);
  E->chans = lua_gettop(L);
  putvarint(E, (uint64_t)n);
  for (i = 0; i < n; i++) {
    E->rooti = n - skip > 1 ? i + 1 - skip : 0;
    enc_value(E, first + i);
  }
  size = sizeof *m + (size_t)E->nch * sizeof(tsk_XChannel *) + E->n;
  m = (tsk_Msg *)malloc(size);
  if (m == NULL) luaL_error(L, "not enough memory");
  m->next = NULL;
  m->len = E->n;
  m->nch = E->nch;
  m->nvals = n;
  m->ch = (tsk_XChannel **)(m + 1);
  m->data = (unsigned char *)(m->ch + E->nch);
  memcpy(m->data, E->p, E->n);
  for (i = 0; i < E->nch; i++) {  /* cannot fail: no allocation */
    lua_rawgeti(L, E->chans, i + 1);
    m->ch[i] = tsk_xchannel_test(L, -1);
    tsk_xchannel_ref(m->ch[i]);
    lua_pop(L, 1);
  }
  lua_settop(L, base);
  return m;
}

tsk_Msg *tsk_msg_string(const void *p, size_t len) {
  unsigned char head[12];
  size_t h = 0, v = len;
  tsk_Msg *m;
  head[h++] = 1;  /* one value */
  head[h++] = T_STR;
  while (v >= 0x80) {
    head[h++] = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  head[h++] = (unsigned char)v;
  if (len > ((size_t)-1) - sizeof *m - h) return NULL;
  m = (tsk_Msg *)malloc(sizeof *m + h + len);
  if (m == NULL) return NULL;
  m->next = NULL;
  m->len = h + len;
  m->nch = 0;
  m->nvals = 1;
  m->ch = (tsk_XChannel **)(m + 1);
  m->data = (unsigned char *)(m + 1);
  memcpy(m->data, head, h);
  if (len > 0) memcpy(m->data + h, p, len);
  return m;
}

void tsk_msg_free(tsk_Msg *m) {
  int i;
  if (m == NULL) return;
  for (i = 0; i < m->nch; i++) tsk_xchannel_unref(m->ch[i]);
  free(m);
}

/* --- decoding ------------------------------------------------------- */

typedef struct Dec {
  lua_State *L;
  const unsigned char *p, *end, *start;
  tsk_XChannel *const *ch;
  int nch;
  int refs;       /* stack slot of the finished tables, by number */
  int ntables, depth;
} Dec;

static NORETURN void bad(Dec *D, const char *why);

static void bad(Dec *D, const char *why) {
  luaL_error(D->L, "invalid message (%s at byte %d)", why, (int)(D->p - D->start));
  for (;;) {}  /* not reached */
}

/* Read a varint at *pp (before end) into *v: NULL, or why it is bad.
** The one reader of both decoders (Lua values and tsk_msg_tovalue). */
static const char *readvarint(const unsigned char **pp, const unsigned char *end,
                              uint64_t *v) {
  const unsigned char *p = *pp;
  int shift = 0;
  *v = 0;
  for (;;) {
    unsigned char c;
    if (p >= end) return "truncated number";
    c = *p++;
    if (shift == 63 && c > 1) return "number too large";
    *v |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) break;
    shift += 7;
    if (shift > 63) return "number too long";
  }
  *pp = p;
  return NULL;
}

static uint64_t getvarint(Dec *D) {
  uint64_t v;
  const char *why = readvarint(&D->p, D->end, &v);
  if (why != NULL) bad(D, why);
  return v;
}

static uint32_t getu32(Dec *D) {
  uint32_t v = 0;
  int i;
  if (D->end - D->p < 4) bad(D, "truncated table");
  for (i = 0; i < 4; i++) v |= (uint32_t)D->p[i] << (8 * i);
  D->p += 4;
  return v;
}

static void dec_value(Dec *D);

static void dec_table(Dec *D) {
  lua_State *L = D->L;
  uint32_t narr, nh, i;
  int id, t;
  size_t left;
  if (D->depth >= TSK_COPY_MAXDEPTH) bad(D, "tables nested too deeply");
  if (!lua_checkstack(L, 4)) bad(D, "stack overflow");
  narr = getu32(D);
  nh = getu32(D);
  left = (size_t)(D->end - D->p);
  if (narr > left || nh > left / 2) bad(D, "table larger than the message");
  id = D->ntables++;
  lua_createtable(L, (int)narr, (int)nh);
  t = lua_gettop(L);
  D->depth++;
  for (i = 1; i <= narr; i++) {
    dec_value(D);
    if (lua_isnil(L, -1)) lua_pop(L, 1);
    else lua_rawseti(L, t, (lua_Integer)i);
  }
  for (i = 0; i < nh; i++) {
    dec_value(D);
    if (lua_isnil(L, -1)) bad(D, "nil table key");
    if (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1)) {
      lua_Number k = lua_tonumber(L, -1);
      if (k != k) bad(D, "NaN table key");
    }
    dec_value(D);
    lua_rawset(L, t);
  }
  D->depth--;
  if (lua_isnil(L, D->refs)) {
    lua_newtable(L);
    lua_replace(L, D->refs);
  }
  lua_pushvalue(L, t);
  lua_rawseti(L, D->refs, id + 1);
}

static void dec_value(Dec *D) {
  lua_State *L = D->L;
  int tag;
  if (D->p >= D->end) bad(D, "truncated value");
  tag = *D->p++;
  switch (tag) {
    case T_NIL: lua_pushnil(L); break;
    case T_FALSE: lua_pushboolean(L, 0); break;
    case T_TRUE: lua_pushboolean(L, 1); break;
    case T_INT: {
      lua_Integer v;
      if ((size_t)(D->end - D->p) < sizeof v) bad(D, "truncated integer");
      memcpy(&v, D->p, sizeof v);
      D->p += sizeof v;
      lua_pushinteger(L, v);
      break;
    }
    case T_FLT: {
      lua_Number v;
      if ((size_t)(D->end - D->p) < sizeof v) bad(D, "truncated float");
      memcpy(&v, D->p, sizeof v);
      D->p += sizeof v;
      lua_pushnumber(L, v);
      break;
    }
    case T_STR: {
      uint64_t len = getvarint(D);
      if (len > (uint64_t)(D->end - D->p)) bad(D, "truncated string");
      lua_pushlstring(L, (const char *)D->p, (size_t)len);
      D->p += len;
      break;
    }
    case T_TABLE: dec_table(D); break;
    case T_REF: {
      uint64_t id = getvarint(D);
      if (id >= (uint64_t)D->ntables) bad(D, "reference to an unknown table");
      if (lua_isnil(L, D->refs) ||
          lua_rawgeti(L, D->refs, (lua_Integer)id + 1) != LUA_TTABLE)
        bad(D, "reference to an unfinished table");
      break;
    }
    case T_XCH: {
      uint64_t i = getvarint(D);
      if (i >= (uint64_t)D->nch) bad(D, "unknown xchannel");
      tsk_xchannel_push(L, D->ch[i]);
      break;
    }
    default: bad(D, "unknown tag");
  }
}

int tsk_copy_decodebuf(lua_State *L, const unsigned char *p, size_t len,
                       tsk_XChannel *const *ch, int nch) {
  Dec D;
  uint64_t n, i;
  int base;
  D.L = L;
  D.p = D.start = p;
  D.end = p + len;
  D.ch = ch;
  D.nch = nch;
  D.ntables = D.depth = 0;
  luaL_checkstack(L, 4, "decoding a message");
  lua_pushnil(L);
  D.refs = base = lua_gettop(L);
  n = getvarint(&D);
  if (n > (uint64_t)(D.end - D.p) || n > 1000000) bad(&D, "too many values");
  if (!lua_checkstack(L, (int)n + 4)) bad(&D, "too many values");
  for (i = 0; i < n; i++) dec_value(&D);
  if (D.p != D.end) bad(&D, "trailing bytes");
  lua_remove(L, base);
  return (int)n;
}

int tsk_copy_decode(lua_State *L, const tsk_Msg *m) {
  return tsk_copy_decodebuf(L, m->data, m->len, m->ch, m->nch);
}

/* --- plain values for C --------------------------------------------- */

tsk_Msg *tsk_msg_fromvalue(const tsk_Value *v) {
  unsigned char b[2 + sizeof(lua_Integer) + sizeof(lua_Number)];
  size_t n = 0;
  tsk_Msg *m;
  b[n++] = 1;  /* one value */
  switch (v->type) {
    case TSK_VNIL: b[n++] = T_NIL; break;
    case TSK_VBOOLEAN: b[n++] = v->boolean ? T_TRUE : T_FALSE; break;
    case TSK_VINTEGER: {
      lua_Integer i = (lua_Integer)v->integer;
      b[n++] = T_INT;
      memcpy(b + n, &i, sizeof i);
      n += sizeof i;
      break;
    }
    case TSK_VNUMBER: {
      lua_Number d = (lua_Number)v->number;
      b[n++] = T_FLT;
      memcpy(b + n, &d, sizeof d);
      n += sizeof d;
      break;
    }
    case TSK_VSTRING:
      if (v->string == NULL && v->len > 0) return NULL;
      return tsk_msg_string(v->string, v->len);
    default: return NULL;
  }
  m = (tsk_Msg *)malloc(sizeof *m + n);
  if (m == NULL) return NULL;
  m->next = NULL;
  m->len = n;
  m->nch = 0;
  m->nvals = 1;
  m->ch = (tsk_XChannel **)(m + 1);
  m->data = (unsigned char *)(m + 1);
  memcpy(m->data, b, n);
  return m;
}

int tsk_msg_tovalue(const tsk_Msg *m, tsk_Value *v) {
  const unsigned char *p = m->data, *end = m->data + m->len;
  memset(v, 0, sizeof *v);
  v->type = TSK_VNIL;
  if (m->len < 2 || p[0] != 1) return UV_EINVAL;  /* exactly one value */
  p += 2;
  switch (m->data[1]) {
    case T_NIL: break;
    case T_FALSE: case T_TRUE:
      v->type = TSK_VBOOLEAN;
      v->boolean = m->data[1] == T_TRUE;
      break;
    case T_INT: {
      lua_Integer i;
      if ((size_t)(end - p) != sizeof i) return UV_EINVAL;
      memcpy(&i, p, sizeof i);
      p += sizeof i;
      v->type = TSK_VINTEGER;
      v->integer = (long long)i;
      break;
    }
    case T_FLT: {
      lua_Number d;
      if ((size_t)(end - p) != sizeof d) return UV_EINVAL;
      memcpy(&d, p, sizeof d);
      p += sizeof d;
      v->type = TSK_VNUMBER;
      v->number = (double)d;
      break;
    }
    case T_STR: {
      uint64_t len;
      char *s;
      if (readvarint(&p, end, &len) != NULL || len != (uint64_t)(end - p))
        return UV_EINVAL;
      s = (char *)malloc((size_t)len + 1);
      if (s == NULL) return UV_ENOMEM;
      memcpy(s, p, (size_t)len);
      s[len] = '\0';
      p += len;
      v->type = TSK_VSTRING;
      v->string = s;
      v->len = (size_t)len;
      break;
    }
    default: return UV_EINVAL;  /* a table or an xchannel */
  }
  return p == end ? 0 : UV_EINVAL;
}

tsk_Msg *tsk_msg_failure(const char *err) {
  size_t len = strlen(err);
  tsk_Msg *m = tsk_msg_string(err, len);
  tsk_Msg *f;
  if (m == NULL) return NULL;
  /* the same bytes with two values: false, then the string */
  f = (tsk_Msg *)malloc(sizeof *f + m->len + 1);
  if (f != NULL) {
    f->next = NULL;
    f->len = m->len + 1;
    f->nch = 0;
    f->nvals = 2;
    f->ch = (tsk_XChannel **)(f + 1);
    f->data = (unsigned char *)(f + 1);
    f->data[0] = 2;
    f->data[1] = T_FALSE;
    memcpy(f->data + 2, m->data + 1, m->len - 1);
  }
  free(m);
  return f;
}
