/*
** spec/c/embed_test.c: the C embedding API of tasksock.h, one behaviour
** per test function. Run by `make ctest`; exits non-zero on any failure.
** Every test ends by closing its state and, for a host loop, checking
** that the loop closes with no handle left.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <uv.h>

#include "tasksock.h"

static int failures, checks;

#define CHECK(c) do { checks++; if (!(c)) { failures++; \
  fprintf(stderr, "%s:%d: %s: check failed: %s\n", __FILE__, __LINE__, __func__, #c); } } while (0)

static lua_State *newstate(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  return L;
}

/* Run Lua source in L; LUA_OK or the status (message printed). */
static int dostring(lua_State *L, const char *src) {
  int st = luaL_dostring(L, src);
  if (st != LUA_OK) {
    fprintf(stderr, "lua: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  return st;
}

static lua_Integer getint(lua_State *L, const char *global) {
  lua_Integer v;
  lua_getglobal(L, global);
  v = lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

/* Close L and the host loop; the loop must have nothing left open. */
static void closeall(lua_State *L, uv_loop_t *loop) {
  lua_close(L);
  if (loop != NULL) {
    uv_run(loop, UV_RUN_NOWAIT);
    CHECK(uv_loop_close(loop) == 0);
  }
}

static void test_open_own_loop_and_run(void) {
  lua_State *L = newstate();
  CHECK(tsk_open(L, NULL) == LUA_OK);
  CHECK(lua_gettop(L) == 0);
  CHECK(tsk_loop(L) != NULL);
  CHECK(dostring(L, "local ts = require 'tasksock'\n"
                    "ts.spawn(function() ts.sleep(0.01) ; DONE = 1 end)") == LUA_OK);
  CHECK(getint(L, "DONE") == 0);
  CHECK(tsk_run(L, TSK_RUN_DEFAULT) == LUA_OK);
  CHECK(getint(L, "DONE") == 1);
  closeall(L, NULL);
}

static void test_open_before_other_libs(void) {
  lua_State *L = luaL_newstate();
  luaL_requiref(L, LUA_LOADLIBNAME, luaopen_package, 1);  /* package only */
  lua_pop(L, 1);
  CHECK(tsk_open(L, NULL) == LUA_OK);
  luaL_openlibs(L);  /* the rest after */
  CHECK(dostring(L, "local ts = require 'tasksock.core'\n"
                    "ts.spawn(function() OK = string.len('abc') end) ts.run()") == LUA_OK);
  CHECK(getint(L, "OK") == 3);
  closeall(L, NULL);
}

static int host_ticks;
static void host_tick(uv_timer_t *t) { (void)t; host_ticks++; }

static void test_host_loop(void) {
  uv_loop_t loop;
  uv_timer_t timer;
  lua_State *L = newstate();
  uv_loop_init(&loop);
  CHECK(tsk_open(L, &loop) == LUA_OK);
  CHECK(tsk_loop(L) == &loop);
  uv_timer_init(&loop, &timer);
  uv_timer_start(&timer, host_tick, 1, 1);
  CHECK(dostring(L, "local ts = require 'tasksock'\n"
                    "N = 0\n"
                    "ts.spawn(function() for _ = 1, 5 do ts.sleep(0.003) ; N = N + 1 end end)") == LUA_OK);
  while (getint(L, "N") < 5 && host_ticks < 5000) uv_run(&loop, UV_RUN_ONCE);
  CHECK(getint(L, "N") == 5);
  CHECK(host_ticks > 0);  /* the host's own timer ran alongside */
  uv_close((uv_handle_t *)&timer, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);  /* ends: tasksock holds the loop only while needed */
  closeall(L, &loop);
}

static void test_reopen_on_other_loop_fails(void) {
  uv_loop_t a, b;
  lua_State *L = newstate();
  uv_loop_init(&a);
  uv_loop_init(&b);
  CHECK(tsk_open(L, &a) == LUA_OK);
  CHECK(tsk_open(L, &a) == LUA_OK);  /* the same loop again: fine */
  CHECK(tsk_open(L, &b) != LUA_OK);
  CHECK(strstr(lua_tostring(L, -1), "another loop") != NULL);
  lua_pop(L, 1);
  CHECK(uv_loop_close(&b) == 0);
  closeall(L, &a);
}

static void test_spawn_with_arguments(void) {
  lua_State *L = newstate();
  CHECK(tsk_open(L, NULL) == LUA_OK);
  CHECK(dostring(L, "function ADD(a, b) local ts = require 'tasksock' ; ts.sleep(0) ; SUM = a + b ; return SUM end") == LUA_OK);
  lua_getglobal(L, "ADD");
  lua_pushinteger(L, 40);
  lua_pushinteger(L, 2);
  CHECK(tsk_tasklet_spawn(L, 2) == LUA_OK);
  CHECK(lua_gettop(L) == 1 && lua_type(L, -1) == LUA_TUSERDATA);  /* the tasklet */
  lua_setglobal(L, "T");
  CHECK(tsk_run(L, TSK_RUN_DEFAULT) == LUA_OK);
  CHECK(getint(L, "SUM") == 42);
  CHECK(dostring(L, "local ok, v = T:join() ; assert(ok and v == 42)") == LUA_OK);
  closeall(L, NULL);
}

static void test_spawn_bad_function(void) {
  lua_State *L = newstate();
  CHECK(tsk_open(L, NULL) == LUA_OK);
  lua_pushinteger(L, 1);
  CHECK(tsk_tasklet_spawn(L, 0) != LUA_OK);
  CHECK(lua_isstring(L, -1) && strstr(lua_tostring(L, -1), "bad argument") != NULL);
  lua_pop(L, 1);
  CHECK(lua_gettop(L) == 0);
  closeall(L, NULL);
}

static int nerr;
static char lastmsg[256], lasttb[1024];

static void on_error(void *ud, lua_State *L, const char *msg, const char *tb) {
  (void)L;
  nerr += *(int *)ud;
  snprintf(lastmsg, sizeof lastmsg, "%s", msg);
  snprintf(lasttb, sizeof lasttb, "%s", tb);
}

static void test_onerror(void) {
  lua_State *L = newstate();
  int one = 1;
  CHECK(tsk_open(L, NULL) == LUA_OK);
  tsk_onerror(L, on_error, &one);
  CHECK(dostring(L, "local ts = require 'tasksock'\n"
                    "local function fails() error('from a tasklet') end\n"
                    "ts.spawn(fails) ; ts.spawn(function() end)") == LUA_OK);
  CHECK(tsk_run(L, TSK_RUN_DEFAULT) == LUA_OK);  /* the failure does not stop the run */
  CHECK(nerr == 1);
  CHECK(strstr(lastmsg, "from a tasklet") != NULL);
  CHECK(strstr(lasttb, "stack traceback") != NULL);
  tsk_onerror(L, NULL, NULL);  /* back to the default */
  CHECK(dostring(L, "assert(require('tasksock').onerror() == nil)") == LUA_OK);
  closeall(L, NULL);
}

static void test_run_modes_and_deadlock(void) {
  lua_State *L = newstate();
  int i;
  CHECK(tsk_open(L, NULL) == LUA_OK);
  CHECK(dostring(L, "local ts = require 'tasksock'\n"
                    "STEPS = 0\n"
                    "ts.spawn(function() for _ = 1, 3 do STEPS = STEPS + 1 ; ts.yield() end end)") == LUA_OK);
  CHECK(tsk_run(L, TSK_RUN_NOWAIT) == LUA_OK);
  CHECK(getint(L, "STEPS") >= 1);
  for (i = 0; i < 10 && getint(L, "STEPS") < 3; i++) CHECK(tsk_run(L, TSK_RUN_ONCE) == LUA_OK);
  CHECK(getint(L, "STEPS") == 3);
  CHECK(dostring(L, "local ts = require 'tasksock'\n"
                    "local ch = ts.channel()\n"
                    "ts.spawn(function() ch:receive() end)") == LUA_OK);
  CHECK(tsk_run(L, TSK_RUN_DEFAULT) != LUA_OK);
  CHECK(strstr(lua_tostring(L, -1), "deadlock") != NULL);
  lua_pop(L, 1);
  closeall(L, NULL);
}

/* --- xchannels ---------------------------------------------------- */

static void test_xchannel_values_from_lua(void) {
  lua_State *L = newstate();
  tsk_XChannel *x = tsk_xchannel_new(16);
  tsk_Value v;
  CHECK(tsk_open(L, NULL) == LUA_OK);
  tsk_xchannel_push(L, x);
  CHECK(tsk_xchannel_test(L, -1) == x);
  lua_setglobal(L, "X");
  lua_pushinteger(L, 1);
  CHECK(tsk_xchannel_test(L, -1) == NULL);
  lua_pop(L, 1);
  CHECK(dostring(L, "X:send(nil) X:send(true) X:send(7) X:send(7.5) X:send('a\\0b') X:send({1})") == LUA_OK);
  CHECK(tsk_xchannel_count(x) == 6);
  CHECK(tsk_xchannel_recv(x, &v, 0) == 0 && v.type == TSK_VNIL);
  CHECK(tsk_xchannel_recv(x, &v, 0) == 0 && v.type == TSK_VBOOLEAN && v.boolean);
  CHECK(tsk_xchannel_recv(x, &v, 0) == 0 && v.type == TSK_VINTEGER && v.integer == 7);
  CHECK(tsk_xchannel_recv(x, &v, 0) == 0 && v.type == TSK_VNUMBER && v.number == 7.5);
  CHECK(tsk_xchannel_recv(x, &v, 0) == 0 && v.type == TSK_VSTRING && v.len == 3 &&
        memcmp(v.string, "a\0b", 4) == 0);
  tsk_value_free(&v);
  CHECK(v.type == TSK_VNIL && v.string == NULL);
  CHECK(tsk_xchannel_recv(x, &v, 0) == TSK_EINVAL);  /* a table: dropped */
  CHECK(tsk_xchannel_count(x) == 0);
  CHECK(tsk_xchannel_recv(x, &v, 0) == TSK_ETIMEDOUT);
  tsk_xchannel_unref(x);  /* Lua keeps its own reference */
  CHECK(dostring(L, "assert(X:send('still alive'))") == LUA_OK);
  closeall(L, NULL);
}

static void test_xchannel_values_to_lua(void) {
  lua_State *L = newstate();
  tsk_XChannel *x = tsk_xchannel_new(8);
  tsk_Value v;
  CHECK(tsk_open(L, NULL) == LUA_OK);
  memset(&v, 0, sizeof v);
  v.type = TSK_VNUMBER; v.number = 0.5;
  CHECK(tsk_xchannel_send(x, &v, 0) == 0);
  v.type = TSK_VINTEGER; v.integer = -3;
  CHECK(tsk_xchannel_send(x, &v, 0) == 0);
  v.type = TSK_VBOOLEAN; v.boolean = 0;
  CHECK(tsk_xchannel_send(x, &v, 0) == 0);
  CHECK(tsk_xchannel_send_bytes(x, "x\0y", 3, 0) == 0);
  v.type = (tsk_ValueType)99;
  CHECK(tsk_xchannel_send(x, &v, 0) == TSK_EINVAL);
  tsk_xchannel_push(L, x);
  lua_setglobal(L, "X");
  CHECK(dostring(L, "local a, b, c, d = X:receive(), X:receive(), X:receive(), X:receive()\n"
                    "assert(math.type(a) == 'float' and a == 0.5)\n"
                    "assert(math.type(b) == 'integer' and b == -3)\n"
                    "assert(c == false and d == 'x\\0y')") == LUA_OK);
  tsk_xchannel_unref(x);
  closeall(L, NULL);
}

static void test_xchannel_timeouts_and_close(void) {
  tsk_XChannel *x = tsk_xchannel_new(1);
  void *p;
  size_t len;
  uint64_t t0;
  CHECK(tsk_xchannel_send_bytes(x, "a", 1, 0) == 0);
  CHECK(tsk_xchannel_send_bytes(x, "b", 1, 0) == TSK_ETIMEDOUT);  /* full */
  t0 = uv_hrtime();
  CHECK(tsk_xchannel_send_bytes(x, "b", 1, 0.03) == TSK_ETIMEDOUT);
  CHECK(uv_hrtime() - t0 >= 25000000);
  CHECK(tsk_xchannel_recv_bytes(x, &p, &len, 0) == 0 && len == 1 && memcmp(p, "a", 2) == 0);
  free(p);
  t0 = uv_hrtime();
  CHECK(tsk_xchannel_recv_bytes(x, &p, &len, 0.03) == TSK_ETIMEDOUT && p == NULL);
  CHECK(uv_hrtime() - t0 >= 25000000);
  CHECK(tsk_xchannel_send_bytes(x, "c", 1, 0) == 0);
  CHECK(tsk_xchannel_close(x) == 0);
  CHECK(tsk_xchannel_send_bytes(x, "d", 1, 0) == TSK_ECLOSED);
  CHECK(tsk_xchannel_recv_bytes(x, &p, &len, 0) == 0);  /* still buffered */
  free(p);
  CHECK(tsk_xchannel_recv_bytes(x, &p, &len, 0) == TSK_ECLOSED);
  tsk_xchannel_unref(x);
}

typedef struct Peer {
  tsk_XChannel *x;
  int n, got, r;
  long long sum;
} Peer;

static void sender(void *arg) {
  Peer *pe = (Peer *)arg;
  int i;
  for (i = 1; i <= pe->n; i++) {
    tsk_Value v;
    memset(&v, 0, sizeof v);
    v.type = TSK_VINTEGER;
    v.integer = i;
    if ((pe->r = tsk_xchannel_send(pe->x, &v, 5)) != 0) return;
  }
}

static void receiver(void *arg) {
  Peer *pe = (Peer *)arg;
  tsk_Value v;
  while ((pe->r = tsk_xchannel_recv(pe->x, &v, 5)) == 0) {
    pe->got++;
    pe->sum += v.integer;
  }
}

static void test_xchannel_rendezvous_between_c_threads(void) {
  Peer s, r;
  uv_thread_t a, b;
  tsk_XChannel *x = tsk_xchannel_new(0);
  memset(&s, 0, sizeof s);
  memset(&r, 0, sizeof r);
  s.x = r.x = x;
  s.n = 2000;
  uv_thread_create(&b, receiver, &r);
  uv_thread_create(&a, sender, &s);
  uv_thread_join(&a);
  tsk_xchannel_close(x);  /* ends the receiver */
  uv_thread_join(&b);
  CHECK(s.r == 0);
  CHECK(r.r == TSK_ECLOSED);
  CHECK(r.got == 2000 && r.sum == 2000LL * 2001 / 2);
  tsk_xchannel_unref(x);
}

static void test_xchannel_c_thread_to_lua_tasklets(void) {
  uv_loop_t loop;
  lua_State *L = newstate();
  tsk_XChannel *x = tsk_xchannel_new(4);
  Peer s;
  uv_thread_t a;
  uv_loop_init(&loop);
  CHECK(tsk_open(L, &loop) == LUA_OK);
  tsk_xchannel_push(L, x);
  lua_setglobal(L, "X");
  CHECK(dostring(L, "local ts = require 'tasksock'\n"
                    "GOT, SUM, DONE = 0, 0, 0\n"
                    "for _ = 1, 3 do ts.spawn(function()\n"
                    "  for v in function() return X:receive() end do GOT = GOT + 1 ; SUM = SUM + v end\n"
                    "  DONE = DONE + 1\n"
                    "end) end") == LUA_OK);
  memset(&s, 0, sizeof s);
  s.x = x;
  s.n = 5000;
  uv_thread_create(&a, sender, &s);
  while (getint(L, "GOT") < 5000) uv_run(&loop, UV_RUN_ONCE);  /* host drives */
  uv_thread_join(&a);
  CHECK(getint(L, "SUM") == 5000LL * 5001 / 2);
  tsk_xchannel_close(x);       /* from C: wakes the three tasklets */
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(getint(L, "DONE") == 3);
  tsk_xchannel_unref(x);
  closeall(L, &loop);
}

static void test_lua_close_with_waiters(void) {
  uv_loop_t loop;
  lua_State *L = newstate();
  tsk_XChannel *x = tsk_xchannel_new(0);
  uv_loop_init(&loop);
  CHECK(tsk_open(L, &loop) == LUA_OK);
  tsk_xchannel_push(L, x);
  lua_setglobal(L, "X");
  CHECK(dostring(L, "local ts = require 'tasksock'\n"
                    "ts.spawn(function() X:receive() end)\n"
                    "ts.spawn(function() X:send('never taken') end)") == LUA_OK);
  uv_run(&loop, UV_RUN_NOWAIT);
  uv_run(&loop, UV_RUN_NOWAIT);
  closeall(L, &loop);  /* the blocked tasklets' waits are undone */
  CHECK(tsk_xchannel_count(x) == 0);
  CHECK(tsk_xchannel_send_bytes(x, "z", 1, 0) == TSK_ETIMEDOUT);  /* no receiver left */
  tsk_xchannel_unref(x);
}

static void test_close_waits_for_threads(void) {
  lua_State *L = newstate();
  tsk_XChannel *x = tsk_xchannel_new(1);
  void *p;
  size_t len;
  CHECK(tsk_open(L, NULL) == LUA_OK);
  tsk_xchannel_push(L, x);
  lua_setglobal(L, "X");
  /* a thread nobody joins, its handle dropped: closing L waits for it */
  CHECK(dostring(L, "local ts = require 'tasksock'\n"
                    "ts.thread.start(\"local x = ... ; require('tasksock').sleep(0.05) ; x:send('late')\", X)\n"
                    "collectgarbage()") == LUA_OK);
  lua_close(L);
  CHECK(tsk_xchannel_recv_bytes(x, &p, &len, 0) == 0 && strcmp((char *)p, "late") == 0);
  free(p);
  tsk_xchannel_unref(x);
}

int main(void) {
  test_open_own_loop_and_run();
  test_open_before_other_libs();
  test_host_loop();
  test_reopen_on_other_loop_fails();
  test_spawn_with_arguments();
  test_spawn_bad_function();
  test_onerror();
  test_run_modes_and_deadlock();
  test_xchannel_values_from_lua();
  test_xchannel_values_to_lua();
  test_xchannel_timeouts_and_close();
  test_xchannel_rendezvous_between_c_threads();
  test_xchannel_c_thread_to_lua_tasklets();
  test_lua_close_with_waiters();
  test_close_waits_for_threads();
  printf("embed_test: %d checks, %d failed\n", checks, failures);
  return failures != 0;
}
