/*
** tasksock.h: the public C API of tasksock, for applications that embed
** Lua and want tasksock inside their own program and event loop.
**
** Conventions (as in libuv):
**   - Functions that can fail return 0 on success or a negative libuv
**     error code (UV_ETIMEDOUT, UV_EPIPE, UV_ENOMEM, UV_EINVAL);
**     uv_strerror() and uv_err_name() describe them. Functions that run
**     Lua code return a Lua status (LUA_OK, LUA_ERRRUN, ...) and leave the
**     error message on the stack, as lua_pcall does.
**   - "Loop thread" means the thread that runs the Lua state's event loop
**     (the thread that calls tsk_run, or the host's own uv_run). A
**     lua_State, as always, is used by one thread at a time: every
**     function taking a lua_State must be called on its loop thread.
**   - Functions on a tsk_XChannel alone are thread-safe: any thread,
**     with or without a Lua state, may call them at any time.
**   - Nothing here calls exit() or abort(): errors are returned, and the
**     errors of tasklets go to the handler set with tsk_onerror().
**   - Timeouts are in seconds, as a double: < 0 waits forever, 0 never
**     waits (fails at once with UV_ETIMEDOUT), > 0 waits at most that long.
**
** Linking: build tasksock's objects into the host (or link core.so) and
** call tsk_open(); Lua code then does `require "tasksock"` as usual.
*/
#ifndef TASKSOCK_H
#define TASKSOCK_H

#include <stddef.h>

#include <lua.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define TSK_API __attribute__((visibility("default")))
#else
#define TSK_API
#endif

#define TSK_VERSION "0.1.0"

/* Error codes, for reading convenience: they are libuv's. */
#define TSK_ETIMEDOUT UV_ETIMEDOUT  /* the timeout expired */
#define TSK_ECLOSED   UV_EPIPE      /* the channel is closed */
#define TSK_ENOMEM    UV_ENOMEM     /* out of memory */
#define TSK_EINVAL    UV_EINVAL     /* not a value C can receive */

/* The C entry point of `require "tasksock.core"`. Prefer tsk_open(). */
TSK_API int luaopen_tasksock_core(lua_State *L);

/* ---------------------------------------------------------------------
** Opening and running
** ------------------------------------------------------------------ */

/*
** Open tasksock in L, on the host's loop when loop is not NULL, else on
** a loop of its own. Makes `require "tasksock.core"` (and "tasksock",
** if its Lua face is not found on package.path) load this copy of the
** code, loads it, and leaves nothing on the stack. L's standard
** libraries must be open ("package" at least); other libraries may be
** opened before or after.
**
** With a host loop, tasklets advance whenever the host runs that loop
** (uv_run in any mode): tasksock keeps an idle handle active while
** tasklets are ready, and its timers and sockets are ordinary handles of
** the loop. tasksock never runs the host's loop itself, except when Lua
** code blocks in the main chunk (outside any tasklet), or in tsk_run().
**
** Returns LUA_OK, or an error status with the message pushed.
** Must be called once, before any Lua code loads tasksock in L (a
** different loop cannot be given to a state whose scheduler exists:
** that is an error). Loop thread only. The loop must outlive L: after
** lua_close(L), run the loop once more (uv_run(loop, UV_RUN_NOWAIT)) so
** tasksock's handles finish closing before uv_loop_close(loop).
*/
TSK_API int tsk_open(lua_State *L, uv_loop_t *loop);

/* The loop that L's tasklets run on (the host's, or tasksock's own).
** Opens the scheduler if needed. Loop thread only. */
TSK_API uv_loop_t *tsk_loop(lua_State *L);

/* Modes for tsk_run, as uv_run's. */
typedef enum {
  TSK_RUN_DEFAULT = 0,  /* until no tasklet is left (or ts.stop()) */
  TSK_RUN_ONCE,         /* one turn of the loop, waiting for an event */
  TSK_RUN_NOWAIT        /* one turn of the loop, not waiting */
} tsk_RunMode;

/*
** Drive the loop of L's scheduler: with TSK_RUN_DEFAULT, as ts.run()
** does, until every tasklet is done; with ONCE or NOWAIT, one turn.
** Returns LUA_OK, or an error status with the message pushed (e.g. a
** deadlock: tasklets blocked that nothing can wake). Must not be called
** from inside a tasklet or a loop callback. Loop thread only; usable with
** a host loop too, while the host is not itself inside uv_run.
*/
TSK_API int tsk_run(lua_State *L, tsk_RunMode mode);

/*
** Spawn a tasklet running the function below the nargs arguments on
** top of L's stack, as ts.spawn(f, ...) does. Pops them, pushes the
** tasklet and returns LUA_OK; or pushes the error message and returns
** an error status. The tasklet starts on the next turn of the loop.
** Loop thread only.
*/
TSK_API int tsk_tasklet_spawn(lua_State *L, int nargs);

/*
** Called when a tasklet fails and nothing catches its error: msg is the
** error (converted to a string), traceback the tasklet's traceback, and
** L the state, whose stack the handler may use but must leave balanced.
** It must not longjmp out (no lua_error): it runs from the scheduler.
*/
typedef void (*tsk_ErrorCb)(void *ud, lua_State *L, const char *msg,
                            const char *traceback);

/*
** Route the errors of L's tasklets to cb (NULL restores the default:
** a report on stderr). Replaces any ts.onerror handler set from Lua, and
** the reverse. ud is passed back untouched. Loop thread only.
*/
TSK_API void tsk_onerror(lua_State *L, tsk_ErrorCb cb, void *ud);

/* ---------------------------------------------------------------------
** Cross-thread channels
**
** A tsk_XChannel is what ts.xchannel() makes: a channel that any thread
** may hold. It is reference counted: each holder owns one reference;
** the last tsk_xchannel_unref frees it. In Lua it is a userdata holding
** its own reference, so a channel handed to Lua stays alive as long as
** Lua uses it, whatever C does with its own.
**
** Values are copied: nil, booleans, integers, floats, strings (any
** bytes), and from Lua also tables of these and xchannels. C sends and
** receives the plain kinds through tsk_Value, or raw bytes (which Lua
** sees as a string).
** ------------------------------------------------------------------ */

typedef struct tsk_XChannel tsk_XChannel;

typedef enum {
  TSK_VNIL, TSK_VBOOLEAN, TSK_VINTEGER, TSK_VNUMBER, TSK_VSTRING
} tsk_ValueType;

/* A plain value. Only the field its type names is meaningful. A string
** received from a channel is malloc'd and NUL-terminated (len excludes
** the NUL): release it with tsk_value_free. */
typedef struct tsk_Value {
  tsk_ValueType type;
  int boolean;
  long long integer;
  double number;
  const char *string;
  size_t len;
} tsk_Value;

/* A new channel holding up to capacity messages (0: each send waits for
** a receiver), with one reference owned by the caller; NULL when out of
** memory. Any thread. */
TSK_API tsk_XChannel *tsk_xchannel_new(size_t capacity);

/* Take / drop a reference. Any thread. */
TSK_API void tsk_xchannel_ref(tsk_XChannel *x);
TSK_API void tsk_xchannel_unref(tsk_XChannel *x);

/* Push x on L's stack as a Lua xchannel (taking a reference of its own;
** the caller keeps its own). Raises on memory errors, like lua_push*.
** Loop thread of L. */
TSK_API void tsk_xchannel_push(lua_State *L, tsk_XChannel *x);

/* The xchannel at index idx of L, or NULL if it is not one. The pointer
** is borrowed: take a reference to keep it beyond the value's life. */
TSK_API tsk_XChannel *tsk_xchannel_test(lua_State *L, int idx);

/* Close x: every waiter, in every thread and state, wakes with
** TSK_ECLOSED (Lua: nil, "closed"); messages already buffered can still
** be received; later sends fail. Returns 0. Any thread. */
TSK_API int tsk_xchannel_close(tsk_XChannel *x);

/* Messages buffered now. Any thread. */
TSK_API size_t tsk_xchannel_count(tsk_XChannel *x);

/*
** Send a copy of v (a string is copied: the caller keeps its memory),
** waiting at most timeout seconds for room. Returns 0, TSK_ETIMEDOUT,
** TSK_ECLOSED or TSK_ENOMEM; nothing is sent unless 0. Any thread;
** blocks the calling OS thread, so do not wait (timeout != 0) on the
** loop thread of a state that must receive it.
*/
TSK_API int tsk_xchannel_send(tsk_XChannel *x, const tsk_Value *v,
                              double timeout);

/* Send len bytes at p as one string message; as tsk_xchannel_send. */
TSK_API int tsk_xchannel_send_bytes(tsk_XChannel *x, const void *p,
                                    size_t len, double timeout);

/*
** Receive the next message into *v, waiting at most timeout seconds.
** Returns 0, TSK_ETIMEDOUT, TSK_ECLOSED (closed and empty), TSK_ENOMEM,
** or TSK_EINVAL when the message is not a plain value (a table or an
** xchannel sent from Lua): that message is consumed and dropped.
** Any thread; blocks the calling OS thread, as tsk_xchannel_send.
*/
TSK_API int tsk_xchannel_recv(tsk_XChannel *x, tsk_Value *v, double timeout);

/* Receive a string message: *p (malloc'd, NUL-terminated, the caller
** frees it with free()) and *len. Other plain values give TSK_EINVAL
** (and are dropped). Otherwise as tsk_xchannel_recv. */
TSK_API int tsk_xchannel_recv_bytes(tsk_XChannel *x, void **p, size_t *len,
                                    double timeout);

/* Free what tsk_xchannel_recv allocated in v (a string); v becomes nil. */
TSK_API void tsk_value_free(tsk_Value *v);

#ifdef __cplusplus
}
#endif

#endif
