/*
** core.c: luaopen_tasksock_core, the C half of require "tasksock".
*/
#include "core.h"

TSK_EXPORT int luaopen_tasksock_core(lua_State *L);

int luaopen_tasksock_core(lua_State *L) {
  tsk_Sched *S = tsk_sched(L);
  lua_newtable(L);
  tsk_sched_open(L, S);
  tsk_tasklet_open(L);
  tsk_channel_open(L);
  tsk_xchannel_open(L);
  tsk_thread_open(L);
  tsk_signal_open(L);
  tsk_dns_open(L);
  tsk_udp_open(L);
  tsk_tcp_open(L);
  tsk_unix_open(L);
  tsk_unixdgram_open(L);
  tsk_select_open(L);
  return 1;
}
