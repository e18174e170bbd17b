/*
** recv_fuzz.c: libFuzzer target for the receive-pattern engine (buffer.c).
**
** One input describes a byte stream, how it arrives (chunk sizes, and how
** much room each read asks tsk_buf_reserve for), whether the peer closes
** at the end, and a sequence of receives over that stream (pattern, line
** bound, prefix, and patience: how many arrivals a receive waits for
** before it gives up as a timeout would).
**
** The harness drives a tsk_Buffer the way a socket does: bytes arrive
** through tsk_buf_reserve/tsk_buf_commit, tsk_recv_match runs after each
** arrival, DONE and failures consume what the engine says, a give-up
** consumes tsk_recv_partial's count. The pattern argument goes through the
** real tsk_recv_parse and results through tsk_recv_push, in a fresh
** lua_State per input (so buffer.c is linked whole, with liblua5.4).
**
** At every step the engine is compared with ref_*, an independent model of
** LuaSocket's receive written plainly over the arrived bytes: the status
** of each match, the returned string or partial, the bytes consumed, and
** the buffered bytes. Any difference prints what happened and aborts.
*/
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "../csrc/buffer.h"

#define MAXRECV   8      /* receives per input */
#define MAXCHUNK  64     /* arrivals per input */
#define MAXPREFIX 15     /* prefix bytes per receive */
#define PATIENT   255    /* patience value meaning: wait forever */

/*
** On a buffer that never held bytes (data NULL), tsk_buf_ptr is NULL + 0:
** undefined in C, and clang's UBSan stops on it. tcp.c uses the macro the
** same way (the first receive on a connection). Building with
** -DRECV_FUZZ_NULLPTR_OK hands the engine "" instead, to fuzz on while
** that is open; the default uses the macro exactly as a socket does.
*/
#ifdef RECV_FUZZ_NULLPTR_OK
#define BUFPTR(b) ((b)->data != NULL ? tsk_buf_ptr(b) : "")
#else
#define BUFPTR(b) tsk_buf_ptr(b)
#endif

/* === decoding the input ================================================ */

typedef struct Input {
  const uint8_t *p;
  size_t n;
} Input;

/* Next byte, or 0 once the input is used up. */
static uint8_t byte(Input *in) {
  if (in->n == 0) return 0;
  in->n--;
  return *in->p++;
}

enum {
  P_INT, P_FLOAT, P_NUMSTR, P_LINE, P_ALL, P_NIL, P_STR, P_ODD, P_ANY,
  P_BOOL, P_KINDS
};

typedef struct Op {
  int pkind;            /* P_* */
  unsigned v;           /* 16-bit parameter */
  size_t maxline;       /* the line bound the socket would pass */
  const uint8_t *prefix;
  size_t plen;
  int patience;         /* arrivals to wait for; PATIENT: forever */
} Op;

typedef struct Chunk {
  size_t len;
  uint8_t mode;         /* how the reads ask for room */
} Chunk;

typedef struct Case {
  int eof;              /* the peer closes after the last chunk */
  Op op[MAXRECV];
  int nop;
  Chunk chunk[MAXCHUNK];
  int nchunk;
  const uint8_t *stream;
  size_t slen;
} Case;

/*
** Layout: flags, op count, 6 bytes per op (kind, v lo, v hi, maxline,
** prefix length, patience), chunk count, 2 bytes per chunk (size, mode),
** the prefixes' bytes, then the stream. Whatever the chunks leave of the
** stream arrives as one last chunk.
*/
static void decode(Case *c, const uint8_t *data, size_t size) {
  Input in = {data, size};
  int i;
  size_t total = 0;
  uint8_t flags = byte(&in);
  c->eof = flags & 1;
  c->nop = 1 + byte(&in) % MAXRECV;
  for (i = 0; i < c->nop; i++) {
    Op *o = &c->op[i];
    uint8_t ml;
    o->pkind = byte(&in) % P_KINDS;
    o->v = byte(&in);
    o->v |= (unsigned)byte(&in) << 8;
    ml = byte(&in);
    o->maxline = ml == 255 ? SIZE_MAX : ml;
    o->plen = byte(&in) % (MAXPREFIX + 1);
    o->patience = byte(&in);
  }
  c->nchunk = byte(&in) % (MAXCHUNK + 1);
  for (i = 0; i < c->nchunk; i++) {
    c->chunk[i].len = byte(&in);
    c->chunk[i].mode = byte(&in);
  }
  for (i = 0; i < c->nop; i++) {  /* prefixes: take what is there */
    Op *o = &c->op[i];
    if (o->pkind == P_ANY) o->plen = 0;  /* receiveany has none */
    if (o->plen > in.n) o->plen = in.n;
    o->prefix = in.p;
    in.p += o->plen;
    in.n -= o->plen;
  }
  c->stream = in.p;
  c->slen = in.n;
  for (i = 0; i < c->nchunk; i++) {  /* chunks cover the stream exactly */
    if (c->chunk[i].len > c->slen - total) c->chunk[i].len = c->slen - total;
    total += c->chunk[i].len;
  }
  if (total < c->slen && c->nchunk < MAXCHUNK) {
    c->chunk[c->nchunk].len = c->slen - total;
    c->chunk[c->nchunk].mode = 0;
    c->nchunk++;
  }
  else if (total < c->slen) c->chunk[c->nchunk - 1].len += c->slen - total;
}

/* === reporting ========================================================= */

static const Case *cur;    /* for fail() */
static int curop = -1;

static void dumpbytes(const char *what, const void *p, size_t n) {
  size_t i;
  fprintf(stderr, "  %s (%zu bytes): \"", what, n);
  for (i = 0; i < n && i < 200; i++) {
    unsigned char ch = ((const unsigned char *)p)[i];
    if (ch == '\n') fputs("\\n", stderr);
    else if (ch == '\r') fputs("\\r", stderr);
    else if (ch < 32 || ch > 126 || ch == '"' || ch == '\\')
      fprintf(stderr, "\\x%02x", ch);
    else fputc(ch, stderr);
  }
  fprintf(stderr, "\"%s\n", n > 200 ? "..." : "");
}

static void fail(const char *fmt, ...) {
  va_list ap;
  int i;
  fprintf(stderr, "\nrecv_fuzz: MISMATCH with the reference model: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  if (cur != NULL) {
    fprintf(stderr, "  case: eof at end %d, %d receives, %d chunks, failing at receive %d\n",
            cur->eof, cur->nop, cur->nchunk, curop + 1);
    for (i = 0; i < cur->nop; i++) {
      const Op *o = &cur->op[i];
      fprintf(stderr, "  receive %d: kind %d v %u maxline %zu patience %d\n",
              i + 1, o->pkind, o->v, o->maxline, o->patience);
      dumpbytes("prefix", o->prefix, o->plen);
    }
    fprintf(stderr, "  chunk sizes:");
    for (i = 0; i < cur->nchunk; i++) fprintf(stderr, " %zu", cur->chunk[i].len);
    fputc('\n', stderr);
    dumpbytes("stream", cur->stream, cur->slen);
  }
  abort();
}

#define check(cond, ...) ((cond) ? (void)0 : fail(__VA_ARGS__))

/* === the reference model =============================================== */

/*
** LuaSocket's receive, stated plainly. A pattern is decided from the Lua
** value alone; a pending receive is decided from the bytes that arrived
** and are unread, and whether the peer closed. No state is kept between
** steps (the engine keeps a scan position; the model rescans).
*/

enum { R_ERROR, R_PREFIX, R_LINE, R_ALL, R_COUNT, R_ANY };

typedef struct RefPat {
  int kind;       /* R_* */
  size_t n;       /* R_COUNT: bytes still wanted after the prefix;
                     R_LINE: the bound; R_ANY: at most */
  int typeerr;    /* R_ERROR from a non-string, non-number */
} RefPat;

/* From a number, as receive(n, prefix): n bytes counting the prefix. */
static RefPat ref_count(double n, size_t plen) {
  RefPat rp = {R_COUNT, 0, 0};
  size_t wanted;
  if (!(n >= 0)) { rp.kind = R_ERROR; return rp; }  /* negative or NaN */
  /* LuaSocket casts to size_t, which on x86-64 gives 0 from 2^64 on;
  ** below that, sizes beyond the engine's ceiling never complete anyway,
  ** so clamping there changes nothing observable */
  if (n >= 18446744073709551616.0) wanted = 0;
  else wanted = n >= 2147483647.0 ? 2147483647u : (size_t)n;
  if (plen > 0 && wanted <= plen) { rp.kind = R_PREFIX; return rp; }
  rp.n = wanted - plen;
  return rp;
}

/* From the Lua value at idx of L. */
static RefPat ref_pattern(lua_State *L, int idx, const Op *o) {
  RefPat rp = {R_ERROR, 0, 0};
  size_t len;
  const char *s;
  if (o->pkind == P_ANY) {
    rp.kind = R_ANY;
    rp.n = o->v % 512 + 1;
    return rp;
  }
  switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
      return ref_count(lua_tonumber(L, idx), o->plen);
    case LUA_TNIL:
      rp.kind = R_LINE;
      rp.n = o->maxline;
      return rp;
    case LUA_TSTRING:
      s = lua_tolstring(L, idx, &len);
      if (strlen(s) == len && lua_stringtonumber(L, s) != 0) {  /* Lua's own conversion */
        double n = lua_tonumber(L, -1);
        lua_pop(L, 1);
        return ref_count(n, o->plen);
      }
      if (len >= 2 && s[0] == '*' && s[1] == 'l') {
        rp.kind = R_LINE;
        rp.n = o->maxline;
      }
      else if (len >= 2 && s[0] == '*' && s[1] == 'a')
        rp.kind = R_ALL;
      return rp;
    default:
      rp.typeerr = 1;
      return rp;
  }
}

/* What a pending receive does with the unread bytes a[0..n). */
typedef struct RefStep {
  int status;       /* TSK_MATCH_* */
  size_t rlen;      /* bytes of a in the result or partial */
  size_t take;      /* bytes consumed */
} RefStep;

static RefStep ref_step(const RefPat *rp, const uint8_t *a, size_t n, int eof) {
  RefStep s = {TSK_MATCH_MORE, 0, 0};
  size_t i;
  switch (rp->kind) {
    case R_LINE:
      for (i = 0; i < n; i++) {
        if (i > rp->n) break;           /* already too long */
        if (a[i] == '\n') {
          s.status = TSK_MATCH_DONE;
          s.rlen = i;
          s.take = i + 1;
          return s;
        }
      }
      if (n > rp->n) {  /* no LF within the bound: fail, taking it all */
        s.status = TSK_MATCH_TOOLONG;
        s.rlen = s.take = n;
        return s;
      }
      if (eof) {
        s.status = TSK_MATCH_FAIL;
        s.rlen = s.take = n;
      }
      return s;
    case R_ALL:
      if (eof) {  /* "closed" with nothing at all, else a success */
        s.status = n > 0 ? TSK_MATCH_DONE : TSK_MATCH_FAIL;
        s.rlen = s.take = n;
      }
      return s;
    case R_COUNT:
      if (rp->n == 0 && n > 0) {  /* receive(0): "" once bytes wait */
        s.status = TSK_MATCH_DONE;
        return s;
      }
      if (rp->n > 0 && n >= rp->n) {
        s.status = TSK_MATCH_DONE;
        s.rlen = s.take = rp->n;
        return s;
      }
      if (eof) {
        s.status = TSK_MATCH_FAIL;
        s.rlen = s.take = n;
      }
      return s;
    default:  /* R_ANY */
      if (n > 0) {
        s.status = TSK_MATCH_DONE;
        s.rlen = s.take = n < rp->n ? n : rp->n;
      }
      else if (eof) s.status = TSK_MATCH_FAIL;
      return s;
  }
}

/* A receive that gives up (timeout) keeps, as its partial, everything
** unread that belongs to it: a line or "*a" all of it, a count at most
** what it wants. */
static size_t ref_giveup(const RefPat *rp, size_t n) {
  if ((rp->kind == R_COUNT || rp->kind == R_ANY) && n > rp->n) return rp->n;
  return n;
}

/* The string a receive returns: prefix .. bytes, CRs of the received
** part of a line dropped (LuaSocket keeps the prefix as given). */
static size_t ref_string(char *out, const RefPat *rp, const Op *o,
                         const uint8_t *a, size_t n) {
  size_t i, k = 0;
  memcpy(out, o->prefix, o->plen);
  k = o->plen;
  for (i = 0; i < n; i++) {
    if (rp->kind == R_LINE && a[i] == '\r') continue;
    out[k++] = (char)a[i];
  }
  return k;
}

/* === the engine, driven like a socket ================================== */

typedef struct Sock {
  tsk_Buffer b;
  const Case *c;
  int next;             /* next chunk to arrive */
  int eof;              /* the close was seen */
  size_t pos, arrived;  /* stream[pos..arrived) is unread */
} Sock;

/* Check the buffer holds exactly the unread stream bytes. */
static void checkbuf(const Sock *s, const char *when) {
  size_t n = s->arrived - s->pos;
  check(tsk_buf_len(&s->b) == n, "%s: buffer holds %zu bytes, expected %zu",
        when, tsk_buf_len(&s->b), n);
  check(n == 0 || memcmp(tsk_buf_ptr(&s->b), s->c->stream + s->pos, n) == 0,
        "%s: buffered bytes differ from the stream", when);
  check(s->b.first <= s->b.last && s->b.last <= s->b.size,
        "%s: buffer indexes out of order (first %u last %u size %u)",
        when, s->b.first, s->b.last, s->b.size);
}

/*
** One arrival: the next chunk, through as many reads as the room each
** reserve gives; or the close once the chunks are done. Returns 0 when
** nothing more can arrive.
*/
static int arrive(Sock *s) {
  const Case *c = s->c;
  const Chunk *ch;
  size_t left;
  if (s->next >= c->nchunk) {
    if (!c->eof || s->eof) return 0;
    s->eof = 1;
    return 1;
  }
  ch = &c->chunk[s->next++];
  left = ch->len;
  if (ch->mode % 4 == 0 && left > 0 && tsk_buf_len(&s->b) == 0) {
    /* as a socket with nothing buffered takes a read from the shared
    ** buffer: a copy made to measure */
    check(tsk_buf_append(&s->b, (const char *)c->stream + s->arrived, left),
          "tsk_buf_append(%zu) failed", left);
    s->arrived += left;
    checkbuf(s, "after tsk_buf_append");
    return 1;
  }
  do {
    size_t min, avail = 0, k;
    char *w;
    size_t tail = s->b.size - s->b.last;
    switch (ch->mode % 4) {
      case 0: min = 1; break;
      case 1: min = left > 0 ? left : 1; break;
      case 2:  /* more than the tail holds: move to the front or grow */
        min = s->b.size < (1u << 18) ? tail + 1 + (ch->mode >> 2) : 1;
        break;
      default: min = 1 + (size_t)(ch->mode >> 2) * 1024; break;
    }
    w = tsk_buf_reserve(&s->b, min, &avail);
    check(w != NULL, "tsk_buf_reserve(%zu) failed", min);
    check(avail >= min, "tsk_buf_reserve(%zu) gave only %zu bytes", min, avail);
    check(w == s->b.data + s->b.last, "tsk_buf_reserve: pointer is not at last");
    check(s->b.size - s->b.last == avail, "tsk_buf_reserve: avail is not the free space");
    checkbuf(s, "after tsk_buf_reserve");
    k = left < avail ? left : avail;
    memcpy(w, c->stream + s->arrived, k);
    tsk_buf_commit(&s->b, k);
    s->arrived += k;
    left -= k;
    checkbuf(s, "after tsk_buf_commit");
  } while (left > 0);
  return 1;
}

/* --- Lua side: the real parse and push, protected --------------------- */

typedef struct Call {
  const Op *o;
  tsk_Recv r;
  int rc;
  const char *p;      /* push: the bytes and how many */
  size_t len;
} Call;

static int l_parse(lua_State *L) {  /* (call, pattern) */
  Call *k = (Call *)lua_touserdata(L, 1);
  k->rc = tsk_recv_parse(L, 2, k->o->plen, k->o->maxline, &k->r);
  return 0;
}

static int l_push(lua_State *L) {  /* (call) -> string */
  Call *k = (Call *)lua_touserdata(L, 1);
  tsk_recv_push(L, &k->r, (const char *)k->o->prefix, k->o->plen, k->p, k->len);
  return 1;
}

/* Push the op's pattern argument. */
static void pushpattern(lua_State *L, const Op *o) {
  static const double odd[] = {
    -1, -0.0, 0.5, 1e300, -1e300, 2147483647.0, 2147483648.0, 4294967296.0,
    9.3e18, 1e-300, -0.5, 3.999999
  };
  char s[32];
  unsigned v = o->v;
  switch (o->pkind) {
    case P_INT: lua_pushinteger(L, v % 512); break;
    case P_FLOAT: lua_pushnumber(L, (v >> 8) + (v & 0xff) / 256.0); break;
    case P_NUMSTR: {
      static const char *const fmt[] = {"%u", " %u ", "0x%x", "%u.5", "%ue0", "\t%u\n"};
      snprintf(s, sizeof s, fmt[(v >> 9) % 6], v % 512);
      lua_pushstring(L, s);
      break;
    }
    case P_LINE: lua_pushstring(L, (v & 1) ? "*line" : "*l"); break;
    case P_ALL: lua_pushstring(L, (v & 1) ? "*all" : "*a"); break;
    case P_NIL: lua_pushnil(L); break;
    case P_STR:  /* two input bytes, as 0, 1 or 2 bytes of string */
      s[0] = (char)(v & 0xff);
      s[1] = (char)(v >> 8);
      lua_pushlstring(L, s, (v >> 8) == 0 ? ((v & 0xff) == 0 ? 0 : 1) : 2);
      break;
    case P_ODD: {
      unsigned i = v % (sizeof odd / sizeof odd[0] + 3);
      if (i < sizeof odd / sizeof odd[0]) lua_pushnumber(L, odd[i]);
      else if (i == sizeof odd / sizeof odd[0]) lua_pushnumber(L, NAN);
      else if (i == sizeof odd / sizeof odd[0] + 1) lua_pushnumber(L, HUGE_VAL);
      else lua_pushinteger(L, LUA_MININTEGER);
      break;
    }
    case P_BOOL: lua_pushboolean(L, v & 1); break;
    default: lua_pushnil(L); break;  /* P_ANY: not parsed */
  }
}

/* What one receive returned, kept to compare runs. */
enum { W_OK, W_CLOSED, W_TIMEOUT, W_TOOLONG, W_ERROR };
static const char *const wname[] = {"ok", "closed", "timeout", "too long", "error"};

typedef struct Result {
  int what;           /* W_* */
  size_t len;         /* of the string or partial */
  uint64_t hash;      /* of its bytes */
} Result;

static uint64_t hashbytes(const void *p, size_t n) {
  uint64_t h = 14695981039346656037u;  /* FNV-1a */
  size_t i;
  for (i = 0; i < n; i++) h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211u;
  return h;
}

/* Push the engine's string for p[0..len) and check it against the model. */
static void checkpush(lua_State *L, Call *k, const RefPat *rp, const char *p,
                      size_t len, const uint8_t *ra, size_t rlen, const char *what,
                      Result *res) {
  char *want = (char *)malloc(k->o->plen + rlen + 1);
  size_t wlen, glen;
  const char *got;
  if (want == NULL) abort();
  k->p = p;
  k->len = len;
  lua_pushcfunction(L, l_push);
  lua_pushlightuserdata(L, k);
  check(lua_pcall(L, 1, 1, 0) == LUA_OK, "tsk_recv_push raised: %s",
        lua_tostring(L, -1));
  got = lua_tolstring(L, -1, &glen);
  wlen = ref_string(want, rp, k->o, ra, rlen);
  if (glen != wlen || memcmp(got, want, wlen) != 0) {
    fprintf(stderr, "recv_fuzz: %s string differs\n", what);
    dumpbytes("engine", got, glen);
    dumpbytes("model", want, wlen);
    fail("%s string differs", what);
  }
  res->len = glen;
  res->hash = hashbytes(got, glen);
  lua_pop(L, 1);
  free(want);
}

static const char *const mname[] = {"MORE", "DONE", "FAIL", "TOOLONG"};

/* One receive, in lockstep with the model. */
static Result receive(lua_State *L, Sock *s, const Op *o) {
  Call k;
  RefPat rp;
  Result res = {W_ERROR, 0, 0};
  int patience = o->patience;
  memset(&k, 0, sizeof k);
  k.o = o;
  lua_settop(L, 0);
  pushpattern(L, o);                                     /* pattern */
  rp = ref_pattern(L, 1, o);
  if (o->pkind == P_ANY) {
    k.r.kind = TSK_RECV_ANY;
    k.r.want = rp.n;
    k.r.scanned = 0;
    k.rc = 1;
  }
  else {
    int st;
    lua_pushcfunction(L, l_parse);
    lua_pushlightuserdata(L, &k);
    lua_pushvalue(L, 1);
    st = lua_pcall(L, 2, 0, 0);
    if (rp.kind == R_ERROR) {
      const char *msg = st != LUA_OK ? lua_tostring(L, -1) : NULL;
      check(st != LUA_OK, "tsk_recv_parse accepted a pattern LuaSocket rejects");
      check(msg != NULL && strstr(msg, rp.typeerr ? "string expected"
                                                  : "invalid receive pattern") != NULL,
            "tsk_recv_parse raised an unexpected message: %s", msg ? msg : "(none)");
      return res;
    }
    check(st == LUA_OK, "tsk_recv_parse raised: %s", lua_tostring(L, -1));
    if (rp.kind == R_PREFIX) {
      check(k.rc == 0, "tsk_recv_parse: the prefix covers the count, yet rc %d", k.rc);
      res.what = W_OK;  /* the prefix is the result: nothing received or taken */
      res.len = o->plen;
      res.hash = hashbytes(o->prefix, o->plen);
      return res;
    }
    check(k.rc == 1, "tsk_recv_parse returned 0 for a pattern that must receive");
    check(k.r.scanned == 0, "tsk_recv_parse left scanned %zu", k.r.scanned);
    switch (rp.kind) {
      case R_LINE:
        check(k.r.kind == TSK_RECV_LINE && k.r.want == rp.n,
              "tsk_recv_parse: expected a line bounded by %zu, got kind %d want %zu",
              rp.n, k.r.kind, k.r.want);
        break;
      case R_ALL:
        check(k.r.kind == TSK_RECV_ALL, "tsk_recv_parse: expected *a, got kind %d",
              k.r.kind);
        break;
      default:
        check(k.r.kind == TSK_RECV_COUNT && k.r.want == rp.n,
              "tsk_recv_parse: expected a count of %zu, got kind %d want %zu",
              rp.n, k.r.kind, k.r.want);
        break;
    }
  }
  for (;;) {
    size_t n = tsk_buf_len(&s->b), len = (size_t)-1, take = (size_t)-1;
    /* as tcp.c does; a UBSan report here is buffer.h's tsk_buf_ptr on a
    ** buffer that never held a byte (see BUFPTR) */
    const char *p = BUFPTR(&s->b);
    const uint8_t *a = s->c->stream + s->pos;
    int st = tsk_recv_match(&k.r, p, n, s->eof, &len, &take);
    RefStep rs = ref_step(&rp, a, n, s->eof);
    size_t need = tsk_recv_need(&k.r);
    check(st >= TSK_MATCH_MORE && st <= TSK_MATCH_TOOLONG, "tsk_recv_match returned %d", st);
    check(st == rs.status, "tsk_recv_match said %s, the model %s (%zu bytes unread, eof %d)",
          mname[st], mname[rs.status], n, s->eof);
    /* read-ahead must not stop short of what the pattern needs */
    check(st != TSK_MATCH_MORE || n < need,
          "tsk_recv_match wants more with %zu bytes, tsk_recv_need says %zu", n, need);
    check(st == TSK_MATCH_MORE || rp.kind == R_ALL || rp.kind == R_LINE || n >= need ||
          s->eof, "tsk_recv_match decided with %zu bytes, below tsk_recv_need's %zu", n, need);
    if (st == TSK_MATCH_MORE) {
      if ((patience == PATIENT || patience-- > 0) && arrive(s)) continue;
      /* give up, as a timeout does */
      len = tsk_recv_partial(&k.r, n);
      rs.rlen = ref_giveup(&rp, n);
      check(len == rs.rlen, "tsk_recv_partial gave %zu, the model %zu", len, rs.rlen);
      res.what = W_TIMEOUT;
      checkpush(L, &k, &rp, p, len, a, rs.rlen, "timeout partial", &res);
      take = rs.take = len;
    }
    else if (st == TSK_MATCH_TOOLONG) {
      /* Which bytes a too-long line fails with is the engine's choice
      ** (buffer.h: "fail with *len bytes"); the model only asks that they
      ** come from the stream in order. Whether that choice depends on how
      ** the bytes arrived is checked by comparing runs (splitcheck). */
      check(len <= take && take <= n,
            "tsk_recv_match TOOLONG: len %zu take %zu with %zu bytes unread", len, take, n);
      res.what = W_TOOLONG;
      checkpush(L, &k, &rp, p, len, a, len, mname[st], &res);
      rs.take = take;
    }
    else {
      check(len == rs.rlen && take == rs.take,
            "tsk_recv_match %s: len %zu take %zu, the model len %zu take %zu",
            mname[st], len, take, rs.rlen, rs.take);
      res.what = st == TSK_MATCH_DONE ? W_OK : W_CLOSED;
      checkpush(L, &k, &rp, p, len, a, rs.rlen, mname[st], &res);
    }
    tsk_buf_consume(&s->b, take);
    s->pos += rs.take;
    checkbuf(s, "after tsk_buf_consume");
    return res;
  }
}

/* === runs ============================================================== */

/* Run every receive of c over a fresh socket, results into res. */
static void run(lua_State *L, const Case *c, Result *res) {
  Sock s;
  memset(&s, 0, sizeof s);
  s.c = c;
  cur = c;
  for (curop = 0; curop < c->nop; curop++) res[curop] = receive(L, &s, &c->op[curop]);
  tsk_buf_free(&s.b);
  cur = NULL;
  curop = -1;
}

/*
** With no timeouts and a peer that closes, results cannot depend on how
** the stream was split into arrivals (LuaSocket's do not; receiveany's
** do, so the comparison stops at the first). Run c so, as it arrives and
** all at once, and compare. Building with
** -DRECV_FUZZ_TOOLONG_SPLIT_OK compares only up to the first too-long line.
*/
static void splitcheck(lua_State *L, const Case *c) {
  Case a = *c, b;
  Result ra[MAXRECV], rb[MAXRECV];
  int i;
  a.eof = 1;
  for (i = 0; i < a.nop; i++) a.op[i].patience = PATIENT;
  b = a;
  b.nchunk = a.slen > 0;
  b.chunk[0].len = a.slen;
  b.chunk[0].mode = 0;
  run(L, &a, ra);
  run(L, &b, rb);
  for (i = 0; i < a.nop; i++) {
    if (a.op[i].pkind == P_ANY) break;  /* receiveany returns what is there */
#ifdef RECV_FUZZ_TOOLONG_SPLIT_OK
    if (ra[i].what == W_TOOLONG || rb[i].what == W_TOOLONG) break;
#endif
    if (ra[i].what != rb[i].what || ra[i].len != rb[i].len || ra[i].hash != rb[i].hash) {
      int j;
      fprintf(stderr, "\nrecv_fuzz: without timeouts, receive %d gives different results"
              " when the stream arrives in %d chunks or at once\n", i + 1, a.nchunk);
      for (j = 0; j < a.nop; j++)
        fprintf(stderr, "  receive %d: chunked %s (%zu bytes), at once %s (%zu bytes)\n",
                j + 1, wname[ra[j].what], ra[j].len, wname[rb[j].what], rb[j].len);
      cur = &a;
      curop = i;
      fail("results depend on how the stream was split");
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Case c;
  Result res[MAXRECV];
  lua_State *L = luaL_newstate();
  if (L == NULL) abort();
  decode(&c, data, size);
  run(L, &c, res);
  splitcheck(L, &c);
  lua_close(L);
  return 0;
}
