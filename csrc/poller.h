/*
** poller.h: readiness of the stream sockets' descriptors, from the
** scheduler's own epoll set (S->poller, core.h) that one uv_poll_t of the
** loop watches.
**
** Why not a uv_poll_t per socket: libuv checks each new one with an
** epoll_ctl ADD and DEL and sets O_NONBLOCK again (ioctl), and every
** uv_poll_start begins with a DEL: five epoll_ctl and an ioctl for a
** connection that is accepted, answered once and closed, against two
** epoll_ctl for libuv's own TCP handles. Here a socket costs one ADD when
** first polled and one DEL when closed, and a tsk_Io is 48 bytes (and a
** slot of 8 in the scheduler's table by descriptor) where a uv_poll_t is
** 160. The price is one epoll_wait more per turn of the loop that has
** socket events, shared by all of them, and the wake-up of the set's own
** poll in the loop's epoll with each event.
**
** Semantics are uv_poll's: level-triggered; a callback gets status 0 and
** UV_READABLE / UV_WRITABLE (only what it polls for; a hang-up or an error
** shows as what it polls for), or UV_EBADF on an error, after which it is
** no longer polled. An io that is polled for something and referenced
** keeps the loop alive. Closing one stops it at once (no callback comes
** after tsk_io_close, not even one already fetched in this turn); its
** memory is released by its close callback after this turn's callbacks,
** never from within tsk_io_close, so the caller may still touch it.
*/
#ifndef TSK_POLLER_H
#define TSK_POLLER_H

#include "core.h"

#if !defined(__linux__) && !defined(TSK_POLLER_UV)
#define TSK_POLLER_UV  /* no epoll: a uv_poll_t per io (poller.c) */
#endif

typedef void (*tsk_IoCb)(tsk_Io *io, int status, int events);
typedef void (*tsk_IoCloseCb)(tsk_Io *io);

struct tsk_Io {
  tsk_Sched *S;
  tsk_IoCb cb;             /* what a readiness event calls */
  tsk_IoCloseCb closecb;   /* frees it, once closed */
  tsk_Io *next, **pprev;   /* in S->poller.open, then in .closed */
  int fd;
  unsigned char want;      /* UV_READABLE | UV_WRITABLE polled for (not 0:
                              fd is in the set) */
  unsigned char refd;      /* keeps the loop alive while polled (epoll) */
  unsigned char closing;   /* closed: its close callback is due */
#ifdef TSK_POLLER_UV
  uv_poll_t h;             /* its own poll, data io */
#endif
};

/* Make io watch fd (which the caller owns and keeps open until it closes
** io), with callback cb, not yet polled; closecb frees io once it is
** closed (and touches no Lua state). check: fd comes from outside
** (setfd), so make sure it can be polled and set O_NONBLOCK, as
** uv_poll_init does; descriptors tasksock made itself non-blocking need
** neither. Returns 0 or a negative uv error. Counts it in S->nsockets. */
int tsk_io_init(tsk_Sched *S, tsk_Io *io, int fd, tsk_IoCb cb, tsk_IoCloseCb closecb,
                int check);

/* Poll io for want (UV_READABLE | UV_WRITABLE; 0 stops it). Returns 0 or a
** negative uv error (then nothing changed). */
int tsk_io_poll(tsk_Io *io, unsigned want);

/* Let io keep the loop alive (while it is polled), or not. */
void tsk_io_ref(tsk_Io *io, int on);

/* Stop io and take it out of the set (before its descriptor is closed);
** its close callback frees it after this turn's callbacks. Uncounts it
** from S->nsockets. Idempotent. */
void tsk_io_close(tsk_Io *io);

/* Free the ios closed so far (their close callbacks). The scheduler calls
** it after its resumes in each turn. */
void tsk_poller_reap(tsk_Sched *S);

/* Call f(io, arg) for every open io of S. */
void tsk_poller_walk(tsk_Sched *S, void (*f)(tsk_Io *io, void *arg), void *arg);

/* The state is closing: close every io left open, free them all, close the
** set and its poll (closecb: the scheduler's handle close callback). */
void tsk_poller_close(tsk_Sched *S, uv_close_cb closecb);

#endif
