/*
** buffer.c: the receive-pattern engine (see buffer.h). The byte buffer and
** pattern parts touch neither libuv nor Lua.
*/
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "buffer.h"

/* === byte buffer ======================================================= */

char *tsk_buf_reserve(tsk_Buffer *b, size_t min, size_t *avail) {
  size_t used = tsk_buf_len(b);
  if (b->size - b->last < min) {
    if (b->first > 0 && b->size - used >= min) {  /* room at the front */
      memmove(b->data, b->data + b->first, used);
    }
    else {
      size_t size = b->size ? b->size : TSK_BUF_INIT;
      char *data;
      while (size - used < min && size <= TSK_BUF_MAX / 2) size *= 2;
      if (size - used < min || size > TSK_BUF_MAX) return NULL;
      if (b->first > 0) {  /* move first: realloc copies less */
        memmove(b->data, b->data + b->first, used);
      }
      data = (char *)realloc(b->data, size);
      if (data == NULL) {
        b->last = (uint32_t)used;  /* keep it consistent */
        b->first = 0;
        return NULL;
      }
      b->data = data;
      b->size = (uint32_t)size;
    }
    b->first = 0;
    b->last = (uint32_t)used;
  }
  *avail = b->size - b->last;
  return b->data + b->last;
}

void tsk_buf_commit(tsk_Buffer *b, size_t n) {
  b->last += (uint32_t)n;
}

int tsk_buf_append(tsk_Buffer *b, const char *p, size_t n) {
  size_t avail = 0;
  char *w;
  if (b->data == NULL) {
    size_t size = (n + 63) & ~(size_t)63;  /* whole cache lines */
    if (n > TSK_BUF_MAX || (b->data = (char *)malloc(size)) == NULL) return 0;
    b->size = (uint32_t)size;
    b->first = b->last = 0;
    w = b->data;
  }
  else if ((w = tsk_buf_reserve(b, n, &avail)) == NULL)
    return 0;
  memcpy(w, p, n);
  b->last += (uint32_t)n;
  return 1;
}

void tsk_buf_consume(tsk_Buffer *b, size_t n) {
  b->first += (uint32_t)n;
  if (b->first == b->last) {
    b->first = b->last = 0;
    if (b->size > TSK_BUF_KEEP || (b->size > TSK_BUF_SMALL && b->size < TSK_BUF_INIT))
      tsk_buf_free(b);
  }
}

void tsk_buf_free(tsk_Buffer *b) {
  free(b->data);
  b->data = NULL;
  b->first = b->last = b->size = 0;
}

/* === receive patterns ================================================== */

int tsk_recv_match(tsk_Recv *r, const char *p, size_t n, int eof,
                   size_t *len, size_t *take) {
  switch (r->kind) {
    case TSK_RECV_LINE: {
      const char *lf = NULL;
      if (r->scanned < n) {
        lf = (const char *)memchr(p + r->scanned, '\n', n - r->scanned);
        r->scanned = (uint32_t)(lf ? (size_t)(lf - p) : n);
      }
      if (lf != NULL && (size_t)(lf - p) <= r->want) {
        *len = (size_t)(lf - p);
        *take = *len + 1;
        return TSK_MATCH_DONE;
      }
      if (r->scanned > r->want) {  /* no LF within the bound: fail with the
                                      first want + 1 bytes, however they came */
        *len = *take = r->want + 1;
        return TSK_MATCH_TOOLONG;
      }
      *len = *take = n;
      return eof ? TSK_MATCH_FAIL : TSK_MATCH_MORE;
    }
    case TSK_RECV_ALL:
      *len = *take = n;
      if (!eof) return TSK_MATCH_MORE;
      return n > 0 ? TSK_MATCH_DONE : TSK_MATCH_FAIL;
    case TSK_RECV_COUNT:
      if (n > 0 && n >= r->want) {
        *len = *take = r->want;
        return TSK_MATCH_DONE;
      }
      *len = *take = n;
      return eof ? TSK_MATCH_FAIL : TSK_MATCH_MORE;
    default:  /* TSK_RECV_ANY */
      *len = *take = n < r->want ? n : r->want;
      if (n > 0) return TSK_MATCH_DONE;
      return eof ? TSK_MATCH_FAIL : TSK_MATCH_MORE;
  }
}

size_t tsk_recv_partial(const tsk_Recv *r, size_t n) {
  if (r->kind == TSK_RECV_COUNT || r->kind == TSK_RECV_ANY)
    return n < r->want ? n : r->want;
  return n;
}

size_t tsk_recv_need(const tsk_Recv *r) {
  switch (r->kind) {
    case TSK_RECV_LINE: return r->want < SIZE_MAX ? r->want + 1 : SIZE_MAX;
    case TSK_RECV_ALL: return SIZE_MAX;
    case TSK_RECV_COUNT: return r->want > 0 ? r->want : 1;
    default: return 1;
  }
}

size_t tsk_recv_copyline(char *dst, const char *src, size_t n) {
  size_t i, k = 0;
  for (i = 0; i < n; i++)
    if (src[i] != '\r') dst[k++] = src[i];
  return k;
}

/* === Lua glue ========================================================== */

int tsk_recv_parse(lua_State *L, int arg, size_t plen, size_t maxline, tsk_Recv *r) {
  r->scanned = 0;
  if (lua_type(L, arg) == LUA_TNUMBER ||
      (lua_type(L, arg) == LUA_TSTRING && lua_isnumber(L, arg))) {
    lua_Number n = lua_tonumber(L, arg);
    luaL_argcheck(L, n >= 0, arg, "invalid receive pattern");
    r->kind = TSK_RECV_COUNT;
    /* LuaSocket's (size_t)n gives 0 on x86-64 from 2^64 on (infinity
    ** too): such a count is receive(0) there */
    if (n >= 18446744073709551616.0) r->want = 0;
    else r->want = n >= (lua_Number)TSK_BUF_MAX ? TSK_BUF_MAX : (size_t)n;
    if (plen > 0 && r->want <= plen) return 0;  /* the prefix is the result */
    r->want -= plen;
    return 1;
  }
  else {
    const char *p = luaL_optstring(L, arg, "*l");
    if (p[0] == '*' && p[1] == 'l') {
      r->kind = TSK_RECV_LINE;
      r->want = maxline;
    }
    else if (p[0] == '*' && p[1] == 'a') {
      r->kind = TSK_RECV_ALL;
      r->want = 0;
    }
    else
      luaL_argerror(L, arg, "invalid receive pattern");
    return 1;
  }
}

void tsk_recv_push(lua_State *L, const tsk_Recv *r, const char *prefix,
                   size_t plen, const char *p, size_t len) {
  const char *cr;
  if (p == NULL) p = "";  /* no buffer yet: len is 0 */
  if (prefix == NULL) prefix = "";
  cr = r->kind == TSK_RECV_LINE && len > 0 ? (const char *)memchr(p, '\r', len) : NULL;
  if (cr == NULL) {
    if (plen == 0) lua_pushlstring(L, p, len);  /* the usual case: one copy */
    else {
      luaL_Buffer b;
      char *d = luaL_buffinitsize(L, &b, plen + len);
      memcpy(d, prefix, plen);
      memcpy(d + plen, p, len);
      luaL_pushresultsize(&b, plen + len);
    }
  }
  else if (cr == p + len - 1 && plen == 0)  /* "...\r\n": just drop the CR */
    lua_pushlstring(L, p, len - 1);
  else {
    luaL_Buffer b;
    char *d = luaL_buffinitsize(L, &b, plen + len);
    memcpy(d, prefix, plen);
    luaL_pushresultsize(&b, plen + tsk_recv_copyline(d + plen, p, len));
  }
}
