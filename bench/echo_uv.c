/*
** echo_uv: a plain, idiomatic libuv TCP echo server (the C baseline).
**
**   echo_uv PORT
**
** Listens on 127.0.0.1:PORT (backlog 1024), prints READY once listening and
** exits cleanly on SIGTERM or SIGINT.
**
** Each read is echoed with uv_try_write first; only the bytes the kernel
** did not take are copied into a write request and queued with uv_write.
** Reads go into one shared buffer: nothing keeps a reference to it after
** read_cb returns, so no per-read allocation is needed. While a connection
** has queued output beyond a high-water mark it stops reading until the
** queue drains (back-pressure).
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#define BACKLOG 1024
#define READ_BUF (64 * 1024)
#define HIGH_WATER (1024 * 1024)

typedef struct {
	uv_write_t req;
	char data[];          /* the unsent tail, copied */
} wreq_t;

static uv_loop_t *loop;
static uv_tcp_t server;
static uv_signal_t sig_term, sig_int;
static char read_buf[READ_BUF];

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	buf->base = read_buf;
	buf->len = sizeof read_buf;
}

static void on_close(uv_handle_t *h)
{
	free(h);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_write(uv_write_t *req, int status)
{
	uv_stream_t *s = req->handle;
	free(req);
	if (status < 0) {
		if (status != UV_ECANCELED && !uv_is_closing((uv_handle_t *)s))
			uv_close((uv_handle_t *)s, on_close);
		return;
	}
	/* resume reading once the queue is back under the mark;
	 * handle->data is non-NULL while reading is paused */
	if (s->data && !uv_is_closing((uv_handle_t *)s) &&
	    uv_stream_get_write_queue_size(s) < HIGH_WATER / 2) {
		s->data = NULL;
		uv_read_start(s, on_alloc, on_read);
	}
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	if (nread < 0) {                     /* UV_EOF or an error */
		uv_close((uv_handle_t *)s, on_close);
		return;
	}
	if (nread == 0)
		return;

	uv_buf_t out = uv_buf_init(buf->base, (unsigned)nread);
	int n = uv_try_write(s, &out, 1);
	if (n == nread)
		return;
	if (n < 0) {
		if (n != UV_EAGAIN) {
			uv_close((uv_handle_t *)s, on_close);
			return;
		}
		n = 0;
	}

	size_t rest = (size_t)nread - (size_t)n;
	wreq_t *w = malloc(sizeof *w + rest);
	if (!w) {
		uv_close((uv_handle_t *)s, on_close);
		return;
	}
	memcpy(w->data, buf->base + n, rest);
	uv_buf_t b = uv_buf_init(w->data, (unsigned)rest);
	if (uv_write(&w->req, s, &b, 1, on_write) < 0) {
		free(w);
		uv_close((uv_handle_t *)s, on_close);
		return;
	}
	if (uv_stream_get_write_queue_size(s) > HIGH_WATER) {
		uv_read_stop(s);
		s->data = s;            /* paused */
	}
}

static void on_connection(uv_stream_t *srv, int status)
{
	if (status < 0)
		return;
	uv_tcp_t *c = malloc(sizeof *c);
	if (!c)
		return;
	uv_tcp_init(loop, c);
	c->data = NULL;
	if (uv_accept(srv, (uv_stream_t *)c) != 0) {
		uv_close((uv_handle_t *)c, on_close);
		return;
	}
	uv_tcp_nodelay(c, 1);
	if (uv_read_start((uv_stream_t *)c, on_alloc, on_read) != 0)
		uv_close((uv_handle_t *)c, on_close);
}

static void close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (uv_is_closing(h))
		return;
	if (h == (uv_handle_t *)&server || h == (uv_handle_t *)&sig_term ||
	    h == (uv_handle_t *)&sig_int)
		uv_close(h, NULL);
	else
		uv_close(h, on_close);      /* client connections are malloc'ed */
}

static void on_signal(uv_signal_t *h, int signum)
{
	(void)h;
	(void)signum;
	uv_walk(loop, close_walk, NULL);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s PORT\n", argv[0]);
		return 2;
	}
	int port = atoi(argv[1]);
	if (port <= 0 || port > 65535) {
		fprintf(stderr, "echo_uv: bad port %s\n", argv[1]);
		return 2;
	}

	signal(SIGPIPE, SIG_IGN);
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}

	loop = uv_default_loop();
	struct sockaddr_in addr;
	uv_ip4_addr("127.0.0.1", port, &addr);
	uv_tcp_init(loop, &server);
	int r = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&server, BACKLOG, on_connection);
	if (r != 0) {
		fprintf(stderr, "echo_uv: listen on port %d: %s\n", port, uv_strerror(r));
		return 1;
	}

	uv_signal_init(loop, &sig_term);
	uv_signal_start(&sig_term, on_signal, SIGTERM);
	uv_signal_init(loop, &sig_int);
	uv_signal_start(&sig_int, on_signal, SIGINT);

	printf("READY\n");
	fflush(stdout);

	uv_run(loop, UV_RUN_DEFAULT);
	r = uv_loop_close(loop);
	return r == 0 ? 0 : 1;
}
