# bench/bench.mk -- builds the benchmark tools (load generator, C echo server).
#
# Meant to be `include`d by the top-level Makefile (run from the repo root),
# but also works on its own:   make -f bench/bench.mk bench-tools
#
# Only BENCH_* variables and build/bench/ targets are defined here, so the
# fragment does not disturb the including Makefile (nor its default goal).

_bench_saved_goal := $(.DEFAULT_GOAL)

CC ?= cc
PKG_CONFIG ?= pkg-config

BENCH_SRC_DIR   := bench
BENCH_BUILD_DIR := build/bench
BENCH_CFLAGS    := -std=gnu99 -O2 -Wall -Wextra -Werror
BENCH_UV_CFLAGS := $(shell $(PKG_CONFIG) --cflags libuv)
BENCH_UV_LIBS   := $(shell $(PKG_CONFIG) --libs libuv)
# extra flags from the command line, e.g. BENCH_EXTRA_CFLAGS=-g
BENCH_EXTRA_CFLAGS ?=

BENCH_TOOLS := $(BENCH_BUILD_DIR)/loadgen $(BENCH_BUILD_DIR)/echo_uv

.PHONY: bench-tools bench-tools-clean
bench-tools: $(BENCH_TOOLS)

$(BENCH_BUILD_DIR):
	mkdir -p $@

$(BENCH_BUILD_DIR)/loadgen: $(BENCH_SRC_DIR)/loadgen.c | $(BENCH_BUILD_DIR)
	$(CC) $(BENCH_CFLAGS) $(BENCH_EXTRA_CFLAGS) $(BENCH_UV_CFLAGS) -o $@ $< $(BENCH_UV_LIBS)

$(BENCH_BUILD_DIR)/echo_uv: $(BENCH_SRC_DIR)/echo_uv.c | $(BENCH_BUILD_DIR)
	$(CC) $(BENCH_CFLAGS) $(BENCH_EXTRA_CFLAGS) $(BENCH_UV_CFLAGS) -o $@ $< $(BENCH_UV_LIBS)

bench-tools-clean:
	rm -f $(BENCH_TOOLS)

# When included, give the default goal back to the including Makefile.
ifneq ($(notdir $(firstword $(MAKEFILE_LIST))),bench.mk)
.DEFAULT_GOAL := $(_bench_saved_goal)
endif
