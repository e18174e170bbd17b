/*
** buffer.h: the receive-pattern engine shared by stream sockets, after
** LuaSocket's buffer layer but over bytes read ahead: a socket keeps what
** libuv read in a tsk_Buffer, and a receive asks tsk_recv_match whether
** those bytes complete its pattern; only then is one Lua string made.
**
** The first two parts are pure functions over bytes (no libuv, no Lua), so
** they can be tested and fuzzed alone against a reference model; the last
** part turns Lua arguments into a tsk_Recv and results into strings.
*/
#ifndef TSK_BUFFER_H
#define TSK_BUFFER_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

/* === byte buffer ======================================================= */

/* Bytes data[first..last) are unread; size is the allocation (data is
** NULL, all 0, until bytes first arrive). */
typedef struct tsk_Buffer {
  char *data;
  uint32_t first, last, size;
  uint32_t spare;  /* the owner's (the word would be padding), untouched
                      by tsk_buf_*: tcp.c keeps a count there */
} tsk_Buffer;

#define TSK_BUF_INIT  (16 * 1024)   /* first allocation by tsk_buf_reserve */
#define TSK_BUF_KEEP  (64 * 1024)   /* larger buffers are freed once empty */
#define TSK_BUF_SMALL 512           /* so are those made to measure by
                                       tsk_buf_append or grown from them,
                                       between this and TSK_BUF_INIT */
#define TSK_BUF_MAX   (0x7fffffffu) /* no buffer grows beyond this */

#define tsk_buf_len(b) ((size_t)((b)->last - (b)->first))
/* NULL (no offset applied to it) while nothing was ever allocated */
#define tsk_buf_ptr(b) ((b)->data != NULL ? (b)->data + (b)->first : NULL)

/* Make room for at least min more bytes after last (moving the unread
** bytes to the front or growing); *avail gets the free space. Returns
** where to write, or NULL when out of memory or beyond TSK_BUF_MAX. */
char *tsk_buf_reserve(tsk_Buffer *b, size_t min, size_t *avail);

/* n bytes were written at the pointer tsk_buf_reserve gave. */
void tsk_buf_commit(tsk_Buffer *b, size_t n);

/* Append n bytes (n > 0), an empty buffer getting an allocation of about
** n bytes only. 0 when out of memory or beyond TSK_BUF_MAX (b unchanged). */
int tsk_buf_append(tsk_Buffer *b, const char *p, size_t n);

/* Drop n unread bytes from the front. An emptied buffer restarts at 0 and
** is freed if larger than TSK_BUF_KEEP, or between TSK_BUF_SMALL and
** TSK_BUF_INIT (grown from a small one: the next bytes may come few). */
void tsk_buf_consume(tsk_Buffer *b, size_t n);

void tsk_buf_free(tsk_Buffer *b);

/* === receive patterns ================================================== */

enum {
  TSK_RECV_LINE,    /* "*l": up to LF, CRs dropped; at most max bytes */
  TSK_RECV_ALL,     /* "*a": until the peer closes */
  TSK_RECV_COUNT,   /* n: exactly want bytes (want 0: "" once any byte is
                       buffered; LuaSocket's receive(0) quirk) */
  TSK_RECV_ANY      /* receiveany(max): 1..want bytes as soon as any */
};

/* Results of tsk_recv_match. */
enum {
  TSK_MATCH_MORE,     /* wait for more bytes */
  TSK_MATCH_DONE,     /* success: the result is the first *len bytes */
  TSK_MATCH_FAIL,     /* eof: fail ("closed") with the first *len bytes */
  TSK_MATCH_TOOLONG   /* a line longer than max: fail with *len bytes */
};

typedef struct tsk_Recv {
  size_t want;      /* COUNT: bytes wanted; ANY: at most; LINE: max length */
  uint32_t scanned; /* LINE: leading bytes known to hold no LF (a buffer
                       holds at most TSK_BUF_MAX) */
  int kind;         /* TSK_RECV_* */
} tsk_Recv;

/*
** Decide what the receive r can return from the n bytes at p; eof says no
** more bytes will come. Sets *len (bytes of p forming the result or the
** partial result; for a line CRs included, LF excluded) and *take (bytes
** to consume: *len, plus the LF of a line). May update r->scanned.
*/
int tsk_recv_match(tsk_Recv *r, const char *p, size_t n, int eof,
                   size_t *len, size_t *take);

/* When the receive r gives up (timeout, error) with n bytes buffered:
** how many of them form its partial result (and are consumed). */
size_t tsk_recv_partial(const tsk_Recv *r, size_t n);

/* How many buffered bytes r needs at least before it can complete
** (SIZE_MAX: only at eof). Read-ahead goes on while fewer are buffered. */
size_t tsk_recv_need(const tsk_Recv *r);

/* Copy n bytes from src to dst dropping CRs; returns the bytes written.
** (For a line: dst needs n - number of CRs bytes.) */
size_t tsk_recv_copyline(char *dst, const char *src, size_t n);

/* === Lua glue ========================================================== */

/*
** Read receive's pattern argument (index arg, default "*l"), given the
** prefix length plen and the line bound maxline, into *r. Raises
** "invalid receive pattern". Returns 0 when nothing must be received
** (a count already covered by a non-empty prefix: the prefix is the
** result), else 1.
*/
int tsk_recv_parse(lua_State *L, int arg, size_t plen, size_t maxline, tsk_Recv *r);

/* Push prefix .. p[0..len) (CRs dropped for a line) as one string.
** [-0, +1, m] */
void tsk_recv_push(lua_State *L, const tsk_Recv *r, const char *prefix,
                   size_t plen, const char *p, size_t len);

#endif
