/*
** poller.c: the scheduler's epoll set for stream sockets (see poller.h).
**
** The set is made with the first socket: epoll_create1, and a uv_poll_t of
** the loop on it, started for good and referenced only while some io that
** is referenced is polled (nref). When the loop finds the set readable,
** dispatch fetches up to TSK_POLLER_BATCH events and calls each io's
** callback, as libuv's own poll would: an event names its descriptor, whose
** io in the set is looked up (P->byfd); events are masked with what the io
** polls for now, and what the batch fetched for an io stopped or closed by
** an earlier callback of the batch is struck from it.
**
** Without epoll (not Linux, or built with -DTSK_POLLER_UV, which the test
** suite runs once), each io is a uv_poll_t of its own, as before the set.
*/
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "poller.h"

static void unlink_io(tsk_Io *io) {
  *io->pprev = io->next;
  if (io->next != NULL) io->next->pprev = io->pprev;
}

static void link_io(tsk_Io **head, tsk_Io *io) {
  io->next = *head;
  if (*head != NULL) (*head)->pprev = &io->next;
  io->pprev = head;
  *head = io;
}

/* io, whose backend part is set up, joins S's open ios. */
static void opened(tsk_Sched *S, tsk_Io *io, int fd, tsk_IoCb cb, tsk_IoCloseCb closecb) {
  io->S = S;
  io->cb = cb;
  io->closecb = closecb;
  io->fd = fd;
  io->want = io->refd = io->closing = 0;
  link_io(&S->poller.open, io);
  S->nsockets++;
}

void tsk_poller_walk(tsk_Sched *S, void (*f)(tsk_Io *io, void *arg), void *arg) {
  tsk_Io *io, *next;
  for (io = S->poller.open; io != NULL; io = next) {
    next = io->next;
    f(io, arg);
  }
}

#ifndef TSK_POLLER_UV  /* --- epoll ------------------------------------- */

#include <sys/epoll.h>
#include <sys/ioctl.h>

#define TSK_POLLER_BATCH 1024

static void dispatch(uv_poll_t *h, int status, int events);

/* Make S's set and its poll, the first time; 0 or a negative uv error. */
static int makeset(tsk_Sched *S) {
  tsk_Poller *P = &S->poller;
  int r;
  if (P->ev != NULL) return 0;
  P->ev = malloc(TSK_POLLER_BATCH * sizeof(struct epoll_event));
  if (P->ev == NULL) return UV_ENOMEM;
  P->fd = epoll_create1(EPOLL_CLOEXEC);
  if (P->fd < 0) r = -errno;
  else if ((r = uv_poll_init(S->loop, &P->h, P->fd)) != 0) close(P->fd);
  if (r != 0) {
    free(P->ev);
    P->ev = NULL;
    P->fd = -1;
    return r;
  }
  P->h.data = S;
  S->nhandles++;
  uv_poll_start(&P->h, UV_READABLE, dispatch);
  uv_unref((uv_handle_t *)&P->h);
  return 0;
}

/* io's share of P->nref: referenced and polled. */
static void account(tsk_Io *io, int refd, unsigned want) {
  tsk_Poller *P = &io->S->poller;
  int was = io->refd && io->want != 0, is = refd && want != 0;
  io->refd = (unsigned char)refd;
  if (was == is) return;
  if (is && P->nref++ == 0) uv_ref((uv_handle_t *)&P->h);
  if (!is && --P->nref == 0) uv_unref((uv_handle_t *)&P->h);
}

int tsk_io_init(tsk_Sched *S, tsk_Io *io, int fd, tsk_IoCb cb, tsk_IoCloseCb closecb,
                int check) {
  int r = makeset(S);
  if (r != 0) return r;
  if (check) {  /* as uv_poll_init: pollable (not a regular file), non-blocking */
    struct epoll_event e;
    int on = 1;
    e.events = EPOLLIN;
    e.data.ptr = NULL;
    if (epoll_ctl(S->poller.fd, EPOLL_CTL_ADD, fd, &e) != 0) return -errno;
    epoll_ctl(S->poller.fd, EPOLL_CTL_DEL, fd, &e);
    if (ioctl(fd, FIONBIO, &on) != 0) return -errno;
  }
  opened(S, io, fd, cb, closecb);
  return 0;
}

/* Room in P->byfd for descriptor fd; 0 or UV_ENOMEM. */
static int roomfor(tsk_Poller *P, int fd) {
  int n = P->nbyfd > 0 ? P->nbyfd : 64;
  tsk_Io **b;
  if (fd < P->nbyfd) return 0;
  if (fd == INT_MAX || (size_t)fd >= SIZE_MAX / sizeof *b) return UV_ENOMEM;
  while (n <= fd) n = n <= INT_MAX / 2 ? n * 2 : INT_MAX;
  b = (tsk_Io **)realloc(P->byfd, (size_t)n * sizeof *b);
  if (b == NULL) return UV_ENOMEM;
  memset(b + P->nbyfd, 0, (size_t)(n - P->nbyfd) * sizeof *b);
  P->byfd = b;
  P->nbyfd = n;
  return 0;
}

int tsk_io_poll(tsk_Io *io, unsigned want) {
  tsk_Poller *P = &io->S->poller;
  struct epoll_event e;
  int i;
  if (io->closing) return UV_EBADF;
  if (want == io->want) return 0;
  e.events = ((want & UV_READABLE) ? EPOLLIN : 0) | ((want & UV_WRITABLE) ? EPOLLOUT : 0);
  e.data.u64 = 0;
  e.data.fd = io->fd;
  if (want == 0) {
    /* stopping takes fd out: a hang-up or error would be reported even
    ** with no events asked for, and the set would stay readable; what
    ** this batch fetched for it is not delivered (as libuv). Unless its
    ** descriptor was closed behind our back and another io has the
    ** number now: that one's stays. */
    if (P->byfd[io->fd] == io) {
      epoll_ctl(P->fd, EPOLL_CTL_DEL, io->fd, &e);
      P->byfd[io->fd] = NULL;
      for (i = 0; i < P->evn; i++) {
        struct epoll_event *f = (struct epoll_event *)P->ev + i;
        if (f->data.fd == io->fd) f->data.fd = -1;
      }
    }
  }
  else {
    int r = roomfor(P, io->fd);
    if (r != 0) return r;
    if (io->want != 0 && P->byfd[io->fd] != io) return UV_EBADF;  /* (as above) */
    if (epoll_ctl(P->fd, io->want != 0 ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, io->fd, &e) != 0)
      return -errno;
    P->byfd[io->fd] = io;
  }
  account(io, io->refd, want);
  io->want = (unsigned char)want;
  return 0;
}

void tsk_io_ref(tsk_Io *io, int on) {
  if (!io->closing) account(io, on != 0, io->want);
}

void tsk_io_close(tsk_Io *io) {
  if (io->closing) return;
  tsk_io_poll(io, 0);  /* (nothing this batch fetched for it is delivered) */
  account(io, 0, 0);
  io->closing = 1;
  unlink_io(io);
  link_io(&io->S->poller.closed, io);
  io->S->nsockets--;
}

void tsk_poller_reap(tsk_Sched *S) {
  tsk_Io *io;
  while ((io = S->poller.closed) != NULL) {
    unlink_io(io);
    if (io->closecb != NULL) io->closecb(io);
  }
}

/* The loop found the set readable: deliver what it holds, as uv_poll
** would (uv__io_poll, uv__poll_io). */
static void dispatch(uv_poll_t *h, int status, int events) {
  tsk_Sched *S = (tsk_Sched *)h->data;
  tsk_Poller *P = &S->poller;
  struct epoll_event *ev = (struct epoll_event *)P->ev;
  int i, n;
  (void)status; (void)events;
  if (P->evn != 0) return;  /* (not reentered: callbacks run no Lua) */
  do n = epoll_wait(P->fd, ev, TSK_POLLER_BATCH, 0); while (n < 0 && errno == EINTR);
  if (n <= 0) return;
  P->evn = n;
  for (i = 0; i < n; i++) {
    int fd = ev[i].data.fd;
    tsk_Io *io = fd >= 0 && fd < P->nbyfd ? P->byfd[fd] : NULL;
    uint32_t want, got;
    if (io == NULL) continue;  /* stopped or closed meanwhile */
    want = ((io->want & UV_READABLE) ? EPOLLIN : 0) | ((io->want & UV_WRITABLE) ? EPOLLOUT : 0);
    got = ev[i].events & (want | EPOLLERR | EPOLLHUP);
    if (got == EPOLLERR || got == EPOLLHUP) got |= want;  /* let the call find out */
    if (got & EPOLLERR) {  /* as uv_poll: stopped, status UV_EBADF */
      tsk_io_poll(io, 0);
      io->cb(io, UV_EBADF, 0);
    }
    else if (got & (EPOLLIN | EPOLLOUT))
      io->cb(io, 0, ((got & EPOLLIN) ? UV_READABLE : 0) | ((got & EPOLLOUT) ? UV_WRITABLE : 0));
  }
  P->evn = 0;
  tsk_poller_reap(S);
}

void tsk_poller_close(tsk_Sched *S, uv_close_cb closecb) {
  tsk_Poller *P = &S->poller;
  tsk_Io *io;
  while ((io = P->open) != NULL) tsk_io_close(io);
  tsk_poller_reap(S);
  free(P->byfd);
  P->byfd = NULL;
  P->nbyfd = 0;
  if (P->ev == NULL) return;
  free(P->ev);
  P->ev = NULL;
  uv_close((uv_handle_t *)&P->h, closecb);
  close(P->fd);
  P->fd = -1;
}

#else  /* --- a uv_poll_t per io --------------------------------------- */

static void uvpoll_cb(uv_poll_t *h, int status, int events) {
  tsk_Io *io = (tsk_Io *)h->data;
  if (status < 0) io->want = 0;  /* libuv stopped it */
  io->cb(io, status, events);
}

static void uvclose_cb(uv_handle_t *h) {
  tsk_Io *io = (tsk_Io *)h->data;
  io->closecb(io);
}

int tsk_io_init(tsk_Sched *S, tsk_Io *io, int fd, tsk_IoCb cb, tsk_IoCloseCb closecb,
                int check) {
  int r = uv_poll_init(S->loop, &io->h, fd);  /* (checks and sets O_NONBLOCK) */
  (void)check;
  if (r != 0) return r;
  io->h.data = io;
  uv_unref((uv_handle_t *)&io->h);
  opened(S, io, fd, cb, closecb);
  return 0;
}

int tsk_io_poll(tsk_Io *io, unsigned want) {
  int r = 0;
  if (io->closing) return UV_EBADF;
  if (want == io->want) return 0;
  if (want == 0) uv_poll_stop(&io->h);
  else r = uv_poll_start(&io->h, (int)want, uvpoll_cb);
  if (r == 0) io->want = (unsigned char)want;
  return r;
}

void tsk_io_ref(tsk_Io *io, int on) {
  if (io->closing) return;
  if (on) uv_ref((uv_handle_t *)&io->h);
  else uv_unref((uv_handle_t *)&io->h);
}

void tsk_io_close(tsk_Io *io) {
  if (io->closing) return;
  io->closing = 1;
  io->want = 0;
  unlink_io(io);
  io->S->nsockets--;
  uv_close((uv_handle_t *)&io->h, uvclose_cb);  /* frees it in the loop's closing phase */
}

void tsk_poller_reap(tsk_Sched *S) { (void)S; }

void tsk_poller_close(tsk_Sched *S, uv_close_cb closecb) {
  tsk_Io *io;
  (void)closecb;
  while ((io = S->poller.open) != NULL) tsk_io_close(io);
}

#endif
