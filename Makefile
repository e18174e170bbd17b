# tasksock: build, test, demo, bench.
# `make test` and `make demo` do all the set-up on a fresh Debian machine.

LUA      ?= lua5.4
PKGS      = lua5.4 libuv
CC       ?= cc
BUILD     = build
MODULE    = $(BUILD)/tasksock/core.so
WARN      = -Wall -Wextra -Werror -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
            -Wpointer-arith -Wcast-qual -Wundef
OPT      ?= -O2 -g
# luarocks passes LUA_INCDIR, LIBUV_INCDIR and LIBUV_LIBDIR; pkg-config finds them otherwise.
INCDIRS   = $(if $(LUA_INCDIR),-I$(LUA_INCDIR)) $(if $(LIBUV_INCDIR),-I$(LIBUV_INCDIR))
CFLAGS_ALL = -std=gnu99 $(OPT) -fPIC -fvisibility=hidden $(WARN) $(INCDIRS) \
             $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(CFLAGS)
LDLIBS_ALL = $(if $(LIBUV_LIBDIR),-L$(LIBUV_LIBDIR)) -luv -lpthread $(LDLIBS)
SRCS      = $(sort $(wildcard csrc/*.c))
OBJS      = $(SRCS:csrc/%.c=$(BUILD)/obj/%.o)
HDRS      = $(wildcard csrc/*.h)

# Debian packages the build and the tests need.
DEPS      = lua5.4 liblua5.4-dev libuv1-dev lua-busted lua-socket luarocks pkg-config gcc make \
            valgrind lua-check cppcheck clang libclang-rt-14-dev
BUSTED    = $(LUA) /usr/bin/busted
LUAENV    = LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$(BUILD)/?.so;;"

.PHONY: all deps test spec spec-uvpoll demo bench env clean install asan valgrind lint

all: $(MODULE)

$(BUILD)/obj/%.o: csrc/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(MODULE): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS) -o $@ $(OBJS) $(LDLIBS_ALL)

# Install what is missing (as root), or say exactly what to run.
deps:
	@sh .ci/deps.sh $(DEPS)

# Every check: the specs (again with a uv_poll_t per socket: spec-uvpoll),
# the C embedding test and example host, then the specs again under
# ASan+UBSan, under valgrind, the thread parts under ThreadSanitizer, the
# fuzz corpora and regressions replayed, and a short fuzzing run.
test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory spec
	@$(MAKE) --no-print-directory spec-uvpoll
	@$(MAKE) --no-print-directory ctest
	@$(MAKE) --no-print-directory run-host
	@$(MAKE) --no-print-directory asan
	@$(MAKE) --no-print-directory valgrind
	@$(MAKE) --no-print-directory tsan
	@$(MAKE) --no-print-directory fuzz-regress
	@$(MAKE) --no-print-directory fuzz-short
	@sed -n 's/^\([0-9]*\) successes \/ \([0-9]*\) failures \/ \([0-9]*\) errors.*/specs: \1 passed, \2 failed/p' \
	  $(BUILD)/spec.log

spec: all
	@{ $(LUAENV) timeout 1200 $(BUSTED) --lpath="lua/?.lua;lua/?/init.lua" --cpath="$(BUILD)/?.so" spec 2>&1; \
	   echo $$? > $(BUILD)/spec.rc; } | tee $(BUILD)/spec.log; exit $$(cat $(BUILD)/spec.rc)

# The specs again with the stream sockets on a uv_poll_t each, as built
# where there is no epoll (poller.c): that path stays tested here.
UVPOLL_BUILD = build-uvpoll
spec-uvpoll: all
	@$(MAKE) --no-print-directory all BUILD=$(UVPOLL_BUILD) CFLAGS="$(CFLAGS) -DTSK_POLLER_UV"
	LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$(UVPOLL_BUILD)/?.so;;" \
	  timeout 1200 $(BUSTED) --lpath="lua/?.lua;lua/?/init.lua" --cpath="$(UVPOLL_BUILD)/?.so" spec

demo: deps
	@$(MAKE) --no-print-directory all
	$(LUAENV) $(LUA) examples/demo.lua

env:
	@echo 'export LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;"'
	@echo 'export LUA_CPATH="$(CURDIR)/$(BUILD)/?.so;;"'

# Static checks: luacheck over the Lua, cppcheck over the C.
lint:
	luacheck --no-color -q lua spec examples bench
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability --std=c99 \
	  --inline-suppr -I csrc $$(pkg-config --cflags-only-I lua5.4) csrc/*.c

# Where `luarocks make` (or a packager) installs: the C module, the Lua
# files and the public embedding header.
INST_LIBDIR ?= $(DESTDIR)/usr/local/lib/lua/5.4
INST_LUADIR ?= $(DESTDIR)/usr/local/share/lua/5.4
INST_INCDIR ?= $(DESTDIR)/usr/local/include
install: $(MODULE)
	mkdir -p $(INST_LIBDIR)/tasksock $(INST_LUADIR)/tasksock $(INST_INCDIR)
	cp $(MODULE) $(INST_LIBDIR)/tasksock/core.so
	cp lua/tasksock/*.lua $(INST_LUADIR)/tasksock/
	if [ -f csrc/tasksock.h ]; then cp csrc/tasksock.h $(INST_INCDIR)/; fi

# The whole spec suite with our module built under AddressSanitizer and
# UndefinedBehaviorSanitizer, with float-cast-overflow (a Lua number out of
# a C int's range; not part of "undefined") (Lua itself is Debian's: the
# runtime is preloaded).
ASAN_BUILD = build-asan
asan: all
	@$(MAKE) --no-print-directory all BUILD=$(ASAN_BUILD) \
	  OPT="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all" \
	  LDFLAGS="-fsanitize=address,undefined,float-cast-overflow"
	LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$(ASAN_BUILD)/?.so;;" \
	  $(BUSTED) --lpath="lua/?.lua;lua/?/init.lua" --cpath="$(ASAN_BUILD)/?.so" spec

# The whole spec suite under valgrind memcheck: no error, no definite leak
# from our module.
valgrind: all
	$(LUAENV) TASKSOCK_SLOW=1 valgrind --quiet --error-exitcode=99 --leak-check=full \
	  --errors-for-leak-kinds=definite --suppressions=.ci/valgrind.supp \
	  $(BUSTED) --lpath="lua/?.lua;lua/?/init.lua" --cpath="$(BUILD)/?.so" spec

BENCH_DEPS = lua-luv lua-cqueues lua-copas nginx-core libnginx-mod-http-lua util-linux
bench: all bench-tools
	@sh .ci/deps.sh $(BENCH_DEPS)
	$(LUAENV) $(LUA) bench/sched.lua
	$(LUAENV) $(LUA) bench/threads.lua
	$(LUAENV) $(LUA) bench/idle_memory.lua 10000
	IDLE_SECONDS=1 $(LUAENV) $(LUA) bench/idle_memory.lua 10000 shared
	ulimit -n $$(ulimit -Hn); IDLE_SECONDS=1 $(LUAENV) $(LUA) bench/idle_memory.lua 100000 shared
	bash bench/echo.sh

-include bench/bench.mk
include threads.mk
include fuzz/fuzz.mk

clean:
	rm -rf $(BUILD) build-asan build-tsan build-fuzz build-uvpoll
