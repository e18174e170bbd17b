/*
** examples/host.c: a C application that embeds tasksock in its own libuv
** loop.
**
** - The host owns the loop and the lua_State, and runs the loop itself.
** - A producer pthread (no Lua state) feeds an xchannel with jobs: raw
**   bytes and plain values, then closes it.
** - Lua tasklets consume the channel while the same loop serves TCP on
**   127.0.0.1 (an echo server and a client talking to it) and ticks a
**   timer; they report back on a second xchannel that the host polls from
**   a timer of its own, without blocking its loop.
** - Tasklet errors come to a C handler; nothing calls exit().
**
**   make host && LUA_PATH="lua/?.lua;lua/?/init.lua;;" build/host [jobs]
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <uv.h>

#include "tasksock.h"

typedef struct Producer {
  tsk_XChannel *jobs;
  int n;
  long long sum;    /* of the integers it sent */
  int failed;
} Producer;

/* Runs on its own thread, with no Lua state: only the xchannel API. */
static void producer(void *arg) {
  Producer *p = (Producer *)arg;
  char line[64];
  int i;
  for (i = 1; i <= p->n; i++) {
    int r;
    if (i % 2) {  /* odd jobs as raw bytes, with a NUL inside */
      int len = snprintf(line, sizeof line, "job %d", i);
      line[len] = '\0';
      r = tsk_xchannel_send_bytes(p->jobs, line, (size_t)len + 1, 5.0);
    }
    else {        /* even jobs as integers */
      tsk_Value v;
      memset(&v, 0, sizeof v);
      v.type = TSK_VINTEGER;
      v.integer = i;
      r = tsk_xchannel_send(p->jobs, &v, 5.0);
      p->sum += i;
    }
    if (r != 0) {
      fprintf(stderr, "producer: send %d failed: %s\n", i, uv_strerror(r));
      p->failed++;
      break;
    }
  }
  tsk_xchannel_close(p->jobs);  /* the consumers see nil, "closed" */
}

static int nerrors;

static void on_error(void *ud, lua_State *L, const char *msg, const char *tb) {
  (void)ud; (void)L; (void)msg;
  fprintf(stderr, "host: a tasklet failed:\n%s\n", tb);
  nerrors++;
}

typedef struct Poll {
  uv_timer_t timer;
  tsk_XChannel *results;
  char *report;     /* what Lua sent back */
  int polls;
} Poll;

/* The host's own timer: polls the results channel without waiting. */
static void poll_cb(uv_timer_t *t) {
  Poll *p = (Poll *)t->data;
  void *bytes;
  size_t len;
  int r = tsk_xchannel_recv_bytes(p->results, &bytes, &len, 0);
  p->polls++;
  if (r == TSK_ETIMEDOUT) return;  /* nothing yet */
  if (r == 0) p->report = (char *)bytes;
  else fprintf(stderr, "host: results: %s\n", uv_strerror(r));
  uv_timer_stop(t);
}

static const char *const consumer_lua =
  "local jobs, results = ...\n"
  "local ts = require 'tasksock'\n"
  "local socket = require 'tasksock.socket'\n"
  "local stats = {bytes = 0, ints = 0, sum = 0, echoes = 0, ticks = 0}\n"
  "local consumers = {}\n"
  "for c = 1, 2 do\n"
  "  consumers[c] = ts.spawn(function()\n"
  "    while true do\n"
  "      local v, err = jobs:receive()\n"
  "      if v == nil then assert(err == 'closed', err) ; return end\n"
  "      if math.type(v) == 'integer' then\n"
  "        stats.ints = stats.ints + 1 ; stats.sum = stats.sum + v\n"
  "      else\n"
  "        assert(v:match('^job %d+%z$'), v) ; stats.bytes = stats.bytes + 1\n"
  "      end\n"
  "      if stats.ints % 100 == 0 then ts.sleep(0) end\n"
  "    end\n"
  "  end)\n"
  "end\n"
  "local server = socket.bind('127.0.0.1', 0)\n"
  "local port = select(2, server:getsockname())\n"
  "local stop = false\n"
  "ts.spawn(function()\n"
  "  local c = assert(server:accept())\n"
  "  while true do\n"
  "    local line = c:receive()\n"
  "    if not line then break end\n"
  "    c:send(line .. '\\n')\n"
  "  end\n"
  "  c:close() ; server:close()\n"
  "end)\n"
  "local client = ts.spawn(function()\n"
  "  local c = assert(socket.connect('127.0.0.1', port))\n"
  "  for i = 1, 20 do\n"
  "    c:send('ping ' .. i .. '\\n')\n"
  "    assert(c:receive() == 'ping ' .. i)\n"
  "    stats.echoes = stats.echoes + 1\n"
  "    ts.sleep(0.002)\n"
  "  end\n"
  "  c:close()\n"
  "end)\n"
  "ts.spawn(function()\n"
  "  while not stop do ts.sleep(0.005) ; stats.ticks = stats.ticks + 1 end\n"
  "end)\n"
  "for c = 1, 2 do assert(consumers[c]:join()) end\n"
  "assert(client:join())\n"
  "stop = true\n"
  "results:send(string.format('bytes=%d ints=%d sum=%d echoes=%d ticks=%d',\n"
  "  stats.bytes, stats.ints, stats.sum, stats.echoes, stats.ticks))\n";

int main(int argc, char **argv) {
  uv_loop_t loop;
  lua_State *L;
  Producer prod;
  uv_thread_t tid;
  Poll poll;
  int jobs = argc > 1 ? atoi(argv[1]) : 10000, status = 0, r;
  char expect[128];

  uv_loop_init(&loop);
  L = luaL_newstate();
  luaL_openlibs(L);  /* the host's libraries first; tasksock after */
  if (tsk_open(L, &loop) != LUA_OK) {
    fprintf(stderr, "host: tsk_open: %s\n", lua_tostring(L, -1));
    return 1;
  }
  tsk_onerror(L, on_error, NULL);

  memset(&prod, 0, sizeof prod);
  prod.jobs = tsk_xchannel_new(64);
  prod.n = jobs;
  memset(&poll, 0, sizeof poll);
  poll.results = tsk_xchannel_new(1);

  /* the Lua main: a tasklet, given both channels */
  if (luaL_loadbuffer(L, consumer_lua, strlen(consumer_lua), "=consumer") != LUA_OK) {
    fprintf(stderr, "host: %s\n", lua_tostring(L, -1));
    return 1;
  }
  tsk_xchannel_push(L, prod.jobs);
  tsk_xchannel_push(L, poll.results);
  if (tsk_tasklet_spawn(L, 2) != LUA_OK) {
    fprintf(stderr, "host: spawn: %s\n", lua_tostring(L, -1));
    return 1;
  }
  lua_pop(L, 1);  /* the tasklet: the scheduler keeps it alive */

  uv_timer_init(&loop, &poll.timer);
  poll.timer.data = &poll;
  uv_timer_start(&poll.timer, poll_cb, 10, 10);

  uv_thread_create(&tid, producer, &prod);
  uv_run(&loop, UV_RUN_DEFAULT);  /* the host's loop: tasklets run in it */
  uv_thread_join(&tid);

  snprintf(expect, sizeof expect, "bytes=%d ints=%d sum=%lld echoes=20",
           (jobs + 1) / 2, jobs / 2, prod.sum);
  if (poll.report == NULL || strncmp(poll.report, expect, strlen(expect)) != 0) {
    fprintf(stderr, "host: expected '%s ...', got '%s'\n", expect,
            poll.report ? poll.report : "(nothing)");
    status = 1;
  }
  else
    printf("host: %s (host polls: %d)\n", poll.report, poll.polls);
  if (nerrors > 0 || prod.failed) status = 1;
  free(poll.report);

  /* the end: close Lua, let tasksock's handles close, close the loop */
  uv_close((uv_handle_t *)&poll.timer, NULL);
  tsk_xchannel_unref(prod.jobs);
  tsk_xchannel_unref(poll.results);
  lua_close(L);
  uv_run(&loop, UV_RUN_DEFAULT);
  r = uv_loop_close(&loop);
  if (r != 0) {
    fprintf(stderr, "host: uv_loop_close: %s (handles left open)\n", uv_strerror(r));
    status = 1;
  }
  return status;
}
