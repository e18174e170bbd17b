# threads.mk: the embedding example, the C test of the embedding API, and a
# ThreadSanitizer run of the thread specs and the example. Included by the
# top Makefile (it uses its BUILD, OBJS, CFLAGS_ALL, LUA, BUSTED, LUAENV).
#
#   make host       build $(BUILD)/host (examples/host.c, tasksock linked in)
#   make run-host   build and run it
#   make ctest      build and run the C test of tasksock.h (spec/c/)
#   make tsan       module, host and C test built with -fsanitize=thread
#                   into build-tsan/; thread specs, host and C test run
#                   with no report

_threads_saved_goal := $(.DEFAULT_GOAL)

LUA_LIBS     = $(shell pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4)
EMBED_CFLAGS = -std=gnu99 $(OPT) $(WARN) -Icsrc \
               $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(CFLAGS)
EMBED_LIBS   = $(LUA_LIBS) $(LDLIBS_ALL) -lm -ldl
THREAD_SPECS = spec/xchannel_spec.lua spec/thread_spec.lua spec/work_spec.lua
TSAN_BUILD   = build-tsan
TSAN_FLAGS   = -O1 -g -fno-omit-frame-pointer -fsanitize=thread
# halt at the first report; libtsan preloaded into the (uninstrumented) lua5.4;
# TASKSOCK_SLOW shrinks the 4 x 250,000 messages spec (tsan runs it ~25x slower)
TSAN_ENV     = TASKSOCK_SLOW=1 TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1"

.PHONY: host run-host ctest tsan

host: $(BUILD)/host

$(BUILD)/host: examples/host.c $(OBJS) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(EMBED_CFLAGS) $(LDFLAGS) -o $@ examples/host.c $(OBJS) $(EMBED_LIBS)

run-host: $(BUILD)/host all
	$(LUAENV) $(BUILD)/host

$(BUILD)/embed_test: spec/c/embed_test.c $(OBJS) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(EMBED_CFLAGS) $(LDFLAGS) -o $@ spec/c/embed_test.c $(OBJS) $(EMBED_LIBS)

ctest: $(BUILD)/embed_test all
	$(LUAENV) $(BUILD)/embed_test

tsan:
	@$(MAKE) --no-print-directory all BUILD=$(TSAN_BUILD) \
	  OPT="$(TSAN_FLAGS)" LDFLAGS="-fsanitize=thread"
	$(CC) $(subst $(OPT),$(TSAN_FLAGS),$(EMBED_CFLAGS)) -fsanitize=thread -o $(TSAN_BUILD)/host \
	  examples/host.c $(SRCS:csrc/%.c=$(TSAN_BUILD)/obj/%.o) $(EMBED_LIBS)
	LD_PRELOAD="$$($(CC) -print-file-name=libtsan.so)" $(TSAN_ENV) \
	LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$(TSAN_BUILD)/?.so;;" \
	  $(BUSTED) --lpath="lua/?.lua;lua/?/init.lua" --cpath="$(TSAN_BUILD)/?.so" $(THREAD_SPECS)
	$(TSAN_ENV) LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$(TSAN_BUILD)/?.so;;" \
	  $(TSAN_BUILD)/host 2000
	$(CC) $(subst $(OPT),$(TSAN_FLAGS),$(EMBED_CFLAGS)) -fsanitize=thread -o $(TSAN_BUILD)/embed_test \
	  spec/c/embed_test.c $(SRCS:csrc/%.c=$(TSAN_BUILD)/obj/%.o) $(EMBED_LIBS)
	$(TSAN_ENV) LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$(TSAN_BUILD)/?.so;;" \
	  $(TSAN_BUILD)/embed_test

.DEFAULT_GOAL := $(_threads_saved_goal)
