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
CFLAGS_ALL = -std=gnu99 $(OPT) -fPIC -fvisibility=hidden $(WARN) \
             $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(CFLAGS)
LDLIBS_ALL = $(shell pkg-config --libs libuv 2>/dev/null) -lpthread $(LDLIBS)
SRCS      = $(sort $(wildcard csrc/*.c))
OBJS      = $(SRCS:csrc/%.c=$(BUILD)/obj/%.o)
HDRS      = $(wildcard csrc/*.h)

# Debian packages the build and the tests need.
DEPS      = lua5.4 liblua5.4-dev libuv1-dev lua-busted lua-socket luarocks pkg-config gcc make
BUSTED    = $(LUA) /usr/bin/busted
LUAENV    = LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$(BUILD)/?.so;;"

.PHONY: all deps test demo bench env clean

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

test: deps
	@$(MAKE) --no-print-directory all
	$(LUAENV) $(BUSTED) --lpath="lua/?.lua;lua/?/init.lua" --cpath="$(BUILD)/?.so" spec

demo: deps
	@$(MAKE) --no-print-directory all
	$(LUAENV) $(LUA) examples/demo.lua

env:
	@echo 'export LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;"'
	@echo 'export LUA_CPATH="$(CURDIR)/$(BUILD)/?.so;;"'

-include bench/bench.mk

clean:
	rm -rf $(BUILD)
