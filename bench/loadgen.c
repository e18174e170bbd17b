/*
** loadgen: a small request/response TCP load generator on libuv.
**
**   loadgen -h HOST -p PORT -c CONNS -s SIZE -d SECONDS [-w WARMUP] [-m echo|churn]
**           [-P PREAMBLE]
**
** echo mode (default): CONNS connections, each one loops
**     write SIZE bytes -> wait until SIZE bytes came back -> repeat
** churn mode: CONNS workers, each one loops
**     connect -> write SIZE bytes -> read SIZE bytes -> close -> repeat
**
** -P PREAMBLE: a string written once right after every connect, before the
** first message (in churn mode: on every connection), e.g. an HTTP request
** that a server needs before it echoes. The backslash escapes \r \n \t \\
** are decoded. The server must answer nothing to it: every byte received
** is checked against the echoed message.
**
** Only round trips that complete after the warm-up are counted. Latencies
** go to a log-linear histogram (fixed array, no allocation per sample).
** At the end one machine-readable line is printed, e.g.
**   RESULT rps=51234 p50_us=1210.5 p99_us=1804.0 conns=64 active=64 size=64 errors=0
** (churn mode prints cps= instead of rps=), followed by a human line.
** active= counts the connections (churn: workers) that completed at least
** one round trip in the measured window; fewer than conns= means some were
** never served in it (e.g. still waiting in the server's accept queue).
**
** The whole run is bounded: it stops after WARMUP + SECONDS whatever the
** server does. Everything runs on one thread and one libuv loop.
*/
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

/* ---------------------------------------------------------------------- */
/* Log-linear histogram of nanosecond values.                              */
/* Values below 2*SUB are exact; above, each power of two is split into    */
/* SUB linear sub-buckets (relative error < 1/SUB).                         */
/* ---------------------------------------------------------------------- */
#define H_SUBBITS 6
#define H_SUB (1u << H_SUBBITS)         /* 64 sub-buckets per octave */
#define H_MAXBITS 40                    /* clamp at 2^40 ns (~18 min) */
#define H_NBUCKETS ((H_MAXBITS - H_SUBBITS + 1) * H_SUB + H_SUB)

typedef struct {
	uint64_t count[H_NBUCKETS];
	uint64_t total;
	uint64_t max;
} histo_t;

static unsigned h_index(uint64_t v)
{
	if (v >= ((uint64_t)1 << H_MAXBITS))
		v = ((uint64_t)1 << H_MAXBITS) - 1;
	if (v < 2 * H_SUB)
		return (unsigned)v;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v);
	unsigned shift = msb - H_SUBBITS;
	return shift * H_SUB + (unsigned)(v >> shift);
}

/* lowest and highest value that land in bucket i */
static void h_range(unsigned i, uint64_t *lo, uint64_t *hi)
{
	if (i < 2 * H_SUB) {
		*lo = *hi = i;
		return;
	}
	unsigned shift = i / H_SUB - 1;
	uint64_t top = (uint64_t)(i % H_SUB + H_SUB);
	*lo = top << shift;
	*hi = ((top + 1) << shift) - 1;
}

static void h_record(histo_t *h, uint64_t v)
{
	h->count[h_index(v)]++;
	h->total++;
	if (v > h->max)
		h->max = v;
}

/* value (ns) at quantile q in [0,1]: midpoint of the bucket holding it */
static double h_quantile(const histo_t *h, double q)
{
	if (h->total == 0)
		return 0.0;
	uint64_t rank = (uint64_t)(q * (double)h->total + 0.5);
	if (rank < 1)
		rank = 1;
	if (rank > h->total)
		rank = h->total;
	uint64_t seen = 0;
	for (unsigned i = 0; i < H_NBUCKETS; i++) {
		seen += h->count[i];
		if (seen >= rank) {
			uint64_t lo, hi;
			h_range(i, &lo, &hi);
			double mid = ((double)lo + (double)hi) / 2.0;
			return mid > (double)h->max ? (double)h->max : mid;
		}
	}
	return (double)h->max;
}

/* ---------------------------------------------------------------------- */
/* Load generator state                                                    */
/* ---------------------------------------------------------------------- */
enum { MODE_ECHO, MODE_CHURN };

enum {
	C_IDLE,        /* no socket; maybe waiting for the retry timer */
	C_CONNECTING,
	C_ACTIVE,
	C_CLOSING
};

typedef struct conn {
	uv_tcp_t tcp;
	uv_connect_t creq;
	uv_write_t wreq;
	uv_timer_t retry;
	uint64_t t0;       /* start of the current round trip (ns) */
	size_t got;        /* bytes received in the current round trip */
	int state;
	int failed;        /* the socket being closed had an error */
	int counted;       /* completed a round trip in the measured window */
} conn_t;

static struct {
	uv_loop_t *loop;
	int mode;
	int nconns;
	size_t size;
	double duration, warmup;
	struct sockaddr_storage addr;
	const char *host;
	int port;

	char *payload;               /* SIZE bytes sent by every connection */
	char *preamble;              /* -P: sent once after each connect */
	size_t prelen;
	conn_t *conns;
	uv_timer_t phase_timer;

	int measuring;               /* warm-up is over */
	int stopping;                /* the run is over */
	uint64_t t_start, t_end;     /* measured window (ns) */
	uint64_t done;               /* round trips completed in the window */
	uint64_t errors;             /* whole run, warm-up included */
	int active;                  /* connections with a round trip in the window */
	double cpu_start, cpu_end;   /* own CPU seconds at window start/end */
	uint64_t err_connect, err_io, err_eof, err_data;
	histo_t hist;
} G;

static char rbuf[64 * 1024];     /* one shared read buffer (single thread) */

static void conn_start(conn_t *c);
static void conn_fail(conn_t *c, uint64_t *which);
static void send_request(conn_t *c);

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	buf->base = rbuf;
	buf->len = sizeof rbuf;
}

static void on_retry(uv_timer_t *t)
{
	conn_t *c = t->data;
	if (!G.stopping)
		conn_start(c);
}

static void on_closed(uv_handle_t *h)
{
	conn_t *c = h->data;
	int failed = c->failed;
	c->state = C_IDLE;
	c->failed = 0;
	if (G.stopping)
		return;
	if (failed)    /* back off a little so a dead server is no busy loop */
		uv_timer_start(&c->retry, on_retry, 10, 0);
	else
		conn_start(c);
}

static void conn_close(conn_t *c, int failed)
{
	if (c->state == C_IDLE || c->state == C_CLOSING)
		return;
	c->state = C_CLOSING;
	c->failed = failed;
	uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void conn_fail(conn_t *c, uint64_t *which)
{
	if (G.stopping)
		return;
	G.errors++;
	(*which)++;
	conn_close(c, 1);
}

static void on_write(uv_write_t *req, int status)
{
	conn_t *c = req->data;
	if (status < 0 && status != UV_ECANCELED)
		conn_fail(c, &G.err_io);
}

/* write the preamble (if with_pre) and payload[off..size): try
 * synchronously first, queue the rest */
static void write_from(conn_t *c, size_t off, int with_pre)
{
	uv_buf_t bufs[2], *b = bufs;
	unsigned nb = 0;
	size_t total = G.size - off;
	if (with_pre && G.prelen > 0) {
		bufs[nb++] = uv_buf_init(G.preamble, (unsigned)G.prelen);
		total += G.prelen;
	}
	bufs[nb++] = uv_buf_init(G.payload + off, (unsigned)(G.size - off));
	int n = uv_try_write((uv_stream_t *)&c->tcp, bufs, nb);
	if (n >= 0 && (size_t)n == total)
		return;
	if (n < 0 && n != UV_EAGAIN) {
		conn_fail(c, &G.err_io);
		return;
	}
	/* skip what went out: whole buffers, then part of one */
	size_t done = n > 0 ? (size_t)n : 0;
	while (done >= b->len) {
		done -= b->len;
		b++;
		nb--;
	}
	b->base += done;
	b->len -= (unsigned)done;
	/* payload and preamble are constant and outlive the request: no copy */
	int r = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, b, nb, on_write);
	if (r < 0)
		conn_fail(c, &G.err_io);
}

static void send_request(conn_t *c)
{
	c->got = 0;
	c->t0 = uv_hrtime();
	write_from(c, 0, 0);
}

static void round_trip_done(conn_t *c, uint64_t started)
{
	uint64_t now = uv_hrtime();
	if (G.measuring && !G.stopping) {
		G.done++;
		h_record(&G.hist, now - started);
		if (!c->counted) {
			c->counted = 1;
			G.active++;
		}
	}
	if (G.stopping)
		return;
	if (G.mode == MODE_CHURN)
		conn_close(c, 0);      /* on_closed reconnects */
	else
		send_request(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	conn_t *c = s->data;
	if (nread == 0)
		return;
	if (nread < 0) {
		conn_fail(c, nread == UV_EOF ? &G.err_eof : &G.err_io);
		return;
	}
	if (c->got + (size_t)nread > G.size ||
	    memcmp(buf->base, G.payload + c->got, (size_t)nread) != 0) {
		conn_fail(c, &G.err_data);   /* more or other bytes than sent */
		return;
	}
	c->got += (size_t)nread;
	if (c->got == G.size)
		round_trip_done(c, c->t0);
}

static void on_connect(uv_connect_t *req, int status)
{
	conn_t *c = req->data;
	if (status == UV_ECANCELED || c->state != C_CONNECTING)
		return;
	if (status < 0) {
		conn_fail(c, &G.err_connect);
		return;
	}
	c->state = C_ACTIVE;
	uv_tcp_nodelay(&c->tcp, 1);
	int r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	if (r < 0) {
		conn_fail(c, &G.err_io);
		return;
	}
	if (G.mode == MODE_CHURN) {
		/* latency of a churn cycle includes the connect */
		c->got = 0;
		write_from(c, 0, 1);
	} else {
		c->got = 0;
		c->t0 = uv_hrtime();
		write_from(c, 0, 1);
	}
}

static void conn_start(conn_t *c)
{
	int r = uv_tcp_init(G.loop, &c->tcp);
	if (r < 0) {
		G.errors++;
		G.err_connect++;
		uv_timer_start(&c->retry, on_retry, 10, 0);
		return;
	}
	c->tcp.data = c;
	c->state = C_CONNECTING;
	c->got = 0;
	c->t0 = uv_hrtime();
	r = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&G.addr,
	                   on_connect);
	if (r < 0)
		conn_fail(c, &G.err_connect);   /* e.g. EMFILE, EADDRNOTAVAIL */
}

/* ---------------------------------------------------------------------- */
/* Phases and report                                                       */
/* ---------------------------------------------------------------------- */
static double own_cpu_seconds(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0.0;
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void report(void)
{
	double secs = (double)(G.t_end - G.t_start) / 1e9;
	double rate = secs > 0 ? (double)G.done / secs : 0.0;
	double p50 = h_quantile(&G.hist, 0.50) / 1e3;
	double p90 = h_quantile(&G.hist, 0.90) / 1e3;
	double p99 = h_quantile(&G.hist, 0.99) / 1e3;
	double p999 = h_quantile(&G.hist, 0.999) / 1e3;
	double mx = (double)G.hist.max / 1e3;
	const char *key = G.mode == MODE_CHURN ? "cps" : "rps";
	double cpu_pct = secs > 0 ? 100.0 * (G.cpu_end - G.cpu_start) / secs : 0.0;

	printf("RESULT %s=%.0f p50_us=%.1f p99_us=%.1f conns=%d active=%d size=%zu errors=%llu\n",
	       key, rate, p50, p99, G.nconns, G.active, G.size,
	       (unsigned long long)G.errors);
	printf("loadgen %s %s:%d conns=%d size=%zu: %llu %s in %.2f s = %.0f/s; "
	       "latency us p50 %.1f p90 %.1f p99 %.1f p99.9 %.1f max %.1f; "
	       "errors %llu (connect %llu, io %llu, eof %llu, data %llu); "
	       "loadgen_cpu=%.0f%%\n",
	       G.mode == MODE_CHURN ? "churn" : "echo", G.host, G.port,
	       G.nconns, G.size, (unsigned long long)G.done,
	       G.mode == MODE_CHURN ? "connections" : "round trips",
	       secs, rate, p50, p90, p99, p999, mx,
	       (unsigned long long)G.errors,
	       (unsigned long long)G.err_connect, (unsigned long long)G.err_io,
	       (unsigned long long)G.err_eof, (unsigned long long)G.err_data,
	       cpu_pct);
	fflush(stdout);
}

static void close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void on_end(uv_timer_t *t)
{
	(void)t;
	G.t_end = uv_hrtime();
	G.cpu_end = own_cpu_seconds();
	G.stopping = 1;
	report();
	/* The result is out; tear down. If teardown somehow hangs, the alarm
	 * ends the process anyway (bounded run). */
	alarm(5);
	uv_walk(G.loop, close_walk, NULL);
}

static void start_measuring(void)
{
	G.measuring = 1;
	G.t_start = uv_hrtime();
	G.cpu_start = own_cpu_seconds();
	G.done = 0;
	memset(&G.hist, 0, sizeof G.hist);
	uv_timer_start(&G.phase_timer, on_end, (uint64_t)(G.duration * 1000.0 + 0.5), 0);
}

static void on_warm(uv_timer_t *t)
{
	(void)t;
	start_measuring();
}

static void usage(const char *prog)
{
	fprintf(stderr,
	        "usage: %s -h HOST -p PORT -c CONNS -s SIZE -d SECONDS "
	        "[-w WARMUP_SECONDS] [-m echo|churn] [-P PREAMBLE]\n", prog);
	exit(2);
}

/* decode the backslash escapes \r \n \t \\ of s in place; returns the length */
static size_t unescape(char *s)
{
	char *w = s;
	for (const char *r = s; *r; r++) {
		if (*r != '\\' || r[1] == '\0') {
			*w++ = *r;
			continue;
		}
		switch (*++r) {
		case 'r': *w++ = '\r'; break;
		case 'n': *w++ = '\n'; break;
		case 't': *w++ = '\t'; break;
		case '\\': *w++ = '\\'; break;
		default: *w++ = '\\'; *w++ = *r; break;
		}
	}
	*w = '\0';
	return (size_t)(w - s);
}

static int resolve(const char *host, int port, struct sockaddr_storage *out)
{
	struct addrinfo hints, *res = NULL;
	char pbuf[16];
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(pbuf, sizeof pbuf, "%d", port);
	int r = getaddrinfo(host, pbuf, &hints, &res);
	if (r != 0 || !res) {
		fprintf(stderr, "loadgen: cannot resolve %s: %s\n", host, gai_strerror(r));
		return -1;
	}
	memcpy(out, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

static void raise_nofile(int want)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	rlim_t need = (rlim_t)want;
	if (rl.rlim_cur >= need)
		return;
	rl.rlim_cur = need < rl.rlim_max ? need : rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
}

int main(int argc, char **argv)
{
	const char *host = "127.0.0.1";
	int port = 0, nconns = 1;
	long size = 64;
	double duration = 5, warmup = 1;
	int mode = MODE_ECHO;
	char *preamble = NULL;
	int opt;
	char *end;

	while ((opt = getopt(argc, argv, "h:p:c:s:d:w:m:P:")) != -1) {
		switch (opt) {
		case 'h': host = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'c': nconns = atoi(optarg); break;
		case 's':
			size = strtol(optarg, &end, 10);
			if (*end == 'k' || *end == 'K') size *= 1024;
			break;
		case 'd': duration = strtod(optarg, NULL); break;
		case 'w': warmup = strtod(optarg, NULL); break;
		case 'm':
			if (strcmp(optarg, "echo") == 0) mode = MODE_ECHO;
			else if (strcmp(optarg, "churn") == 0) mode = MODE_CHURN;
			else usage(argv[0]);
			break;
		case 'P': preamble = optarg; break;
		default: usage(argv[0]);
		}
	}
	if (port <= 0 || port > 65535 || nconns <= 0 || size <= 0 ||
	    size > 64L * 1024 * 1024 || !(duration > 0) || warmup < 0 ||
	    duration > 3600 || warmup > 3600)
		usage(argv[0]);

	signal(SIGPIPE, SIG_IGN);
	raise_nofile(nconns + 64);

	memset(&G, 0, sizeof G);
	G.loop = uv_default_loop();
	G.mode = mode;
	G.nconns = nconns;
	G.size = (size_t)size;
	G.duration = duration;
	G.warmup = warmup;
	G.host = host;
	G.port = port;
	if (preamble) {
		G.preamble = preamble;       /* argv storage, decoded in place */
		G.prelen = unescape(preamble);
	}
	if (resolve(host, port, &G.addr) != 0)
		return 1;

	G.payload = malloc(G.size);
	G.conns = calloc((size_t)nconns, sizeof *G.conns);
	if (!G.payload || !G.conns) {
		fprintf(stderr, "loadgen: out of memory\n");
		return 1;
	}
	for (size_t i = 0; i < G.size; i++)
		G.payload[i] = (char)('a' + i % 26);

	uv_timer_init(G.loop, &G.phase_timer);
	for (int i = 0; i < nconns; i++) {
		conn_t *c = &G.conns[i];
		uv_timer_init(G.loop, &c->retry);
		c->retry.data = c;
		c->wreq.data = c;
		c->creq.data = c;
		c->state = C_IDLE;
	}
	for (int i = 0; i < nconns; i++)
		conn_start(&G.conns[i]);

	if (warmup > 0)
		uv_timer_start(&G.phase_timer, on_warm, (uint64_t)(warmup * 1000.0 + 0.5), 0);
	else
		start_measuring();

	/* hard bound on the whole run, whatever happens in the loop */
	alarm((unsigned)(warmup + duration) + 10);

	uv_run(G.loop, UV_RUN_DEFAULT);
	uv_loop_close(G.loop);
	free(G.conns);
	free(G.payload);
	return 0;
}
