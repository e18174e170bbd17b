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
DEPS      = lua5.4 liblua5.4-dev libuv1-dev lua-busted lua-socket luarocks pkg-config gcc make
BUSTED    = $(LUA) /usr/bin/busted
LUAENV    = LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$(BUILD)/?.so;;"

.PHONY: all deps test demo bench env clean install

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

bench: all bench-tools
	$(LUAENV) $(LUA) bench/sched.lua
	bash bench/echo.sh

-include bench/bench.mk

clean:
	rm -rf $(BUILD)
