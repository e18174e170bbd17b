/*
** copy.h: copying values between Lua states through a flat message.
**
** What can be copied: nil, booleans, integers and floats (kept apart),
** strings (any bytes), xchannels, and tables of these, nested; a table
** reached twice is copied once and the copy keeps the sharing. Metatables
** are not copied. Anything else (functions, coroutines, other userdata,
** cycles, nesting deeper than TSK_COPY_MAXDEPTH) is refused with an error
** naming where the value is, e.g. "cannot send a function (at
** value.config[3])", and nothing is produced.
**
** A message is one malloc'd block, owned by whoever holds the pointer;
** it holds one reference to each xchannel it contains. It can be decoded
** any number of times, in any state, and freed from any thread.
*/
#ifndef TSK_COPY_H
#define TSK_COPY_H

#include <stddef.h>

#include "tasksock.h"

#define TSK_COPY_MAXDEPTH 100

typedef struct tsk_Msg {
  struct tsk_Msg *next;   /* free for the holder (queues) */
  size_t len;             /* bytes of data */
  int nch;                /* xchannels referenced */
  int nvals;              /* values encoded */
  tsk_XChannel **ch;      /* nch pointers, in the same block */
  unsigned char *data;    /* len bytes, in the same block */
} tsk_Msg;

/*
** Encode the n values at first.. of L's stack into a new message.
** root names them in errors, the first skip values (which the caller
** knows can be copied) aside: for one value it is the whole path's
** start ("value"); for several, "root[i]". Raises on a value that cannot be
** copied or on memory errors, leaving nothing allocated. [-0, +0, e]
*/
tsk_Msg *tsk_copy_encode(lua_State *L, int first, int n, int skip,
                         const char *root);

/* A message holding one string, made without a Lua state; NULL when out
** of memory. */
tsk_Msg *tsk_msg_string(const void *p, size_t len);

/*
** Push the values of m (m->nvals of them); returns how many. Validates
** its input fully: malformed data raises "invalid message (...)".
** [-0, +n, e]
*/
int tsk_copy_decode(lua_State *L, const tsk_Msg *m);

/* The same over raw bytes, with the xchannels they may refer to. */
int tsk_copy_decodebuf(lua_State *L, const unsigned char *p, size_t len,
                       tsk_XChannel *const *ch, int nch);

/* Free m and drop its xchannel references (any thread; NULL is fine). */
void tsk_msg_free(tsk_Msg *m);

/* The message (false, err), made without a Lua state; NULL if no memory. */
tsk_Msg *tsk_msg_failure(const char *err);

/* C values (tasksock.h) to and from messages; NULL / UV_EINVAL when not
** possible. A received string is malloc'd, NUL-terminated. */
tsk_Msg *tsk_msg_fromvalue(const tsk_Value *v);
int tsk_msg_tovalue(const tsk_Msg *m, tsk_Value *v);

#endif
