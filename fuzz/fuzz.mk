# fuzz/fuzz.mk: libFuzzer targets, included by the top Makefile and run
# from the repository root (clang and libclang-rt-14-dev on Debian).
#
#   make fuzz-build      build every target into $(FUZZ_BUILD)/
#   make fuzz            fuzz each target for FUZZ_SECONDS (default 60)
#   make fuzz-short      the same for 10 s each (CI)
#   make fuzz-regress    replay fuzz/regress/<target>/ and fuzz/corpus/<target>/
#                        once: fast and deterministic (part of `make test`)
#
# fuzz/corpus/<target>/ holds the hand-made seeds (fuzz/seeds.lua writes
# them) and is only read; what a run discovers goes to
# $(FUZZ_BUILD)/corpus/<target>/, crashes to $(FUZZ_BUILD)/artifacts/.
# A crash fails the target. Pin a crash by adding its input, named after
# what it shows, to fuzz/regress/<target>/ (fuzz/seeds.lua writes them).
#
# FUZZ_CFLAGS passes switches to the targets, e.g. the ones recv_fuzz.c
# has to step around an open finding; use another FUZZ_BUILD with them
# (make does not rebuild on changed flags):
#   make fuzz FUZZ_BUILD=build-fuzz-open \
#     FUZZ_CFLAGS="-DRECV_FUZZ_NULLPTR_OK -DRECV_FUZZ_TOOLONG_SPLIT_OK"

FUZZ_CC      ?= clang
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS  ?=
FUZZ_TARGETS  = recv_fuzz copy_fuzz
FUZZ_FLAGS    = -std=gnu99 -g -O1 -fno-omit-frame-pointer \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
                -Wall -Wextra -Werror -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
                -Wpointer-arith -Wcast-qual -Wundef \
                $(shell pkg-config --cflags lua5.4 libuv) $(FUZZ_CFLAGS)
FUZZ_LIBS     = $(shell pkg-config --libs lua5.4 libuv) -lpthread -lm
FUZZ_ENV      = ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 \
                UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# Longest input per target: a receive case is small; a message a bit larger.
FUZZ_MAXLEN_recv_fuzz = 1024
FUZZ_MAXLEN_copy_fuzz = 4096

FUZZ_CSRC = $(sort $(wildcard csrc/*.c))
FUZZ_CHDR = $(wildcard csrc/*.h)

.PHONY: fuzz-build fuzz fuzz-short fuzz-regress

fuzz-build: $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/%)

# The receive engine alone (buffer.c: its Lua glue links liblua5.4).
$(FUZZ_BUILD)/recv_fuzz: fuzz/recv_fuzz.c csrc/buffer.c csrc/buffer.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) fuzz/recv_fuzz.c csrc/buffer.c $(FUZZ_LIBS) -o $@

# copy.c refers to the xchannels, which need the rest: link the module's
# sources whole (no main among them).
$(FUZZ_BUILD)/copy_fuzz: fuzz/copy_fuzz.c $(FUZZ_CSRC) $(FUZZ_CHDR)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) fuzz/copy_fuzz.c $(FUZZ_CSRC) $(FUZZ_LIBS) -o $@

# $(call fuzz_run,seconds): each target in turn; the full output goes to
# $(FUZZ_BUILD)/<target>.log; fails at the end if any target crashed.
define fuzz_run
	@bad=0; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t $(FUZZ_BUILD)/artifacts; \
	  case $$t in recv_fuzz) max=$(FUZZ_MAXLEN_recv_fuzz);; *) max=$(FUZZ_MAXLEN_copy_fuzz);; esac; \
	  echo "fuzz: $$t for $(1) s (log: $(FUZZ_BUILD)/$$t.log)"; \
	  if $(FUZZ_ENV) $(FUZZ_BUILD)/$$t -max_total_time=$(1) -max_len=$$max -timeout=10 \
	       -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$t- \
	       $(FUZZ_BUILD)/corpus/$$t fuzz/corpus/$$t > $(FUZZ_BUILD)/$$t.log 2>&1; then \
	    grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units)' $(FUZZ_BUILD)/$$t.log; \
	  else \
	    bad=$$((bad + 1)); \
	    grep -v -e '^    #' -e '^#[0-9]' -e '^INFO' -e '^stat::' $(FUZZ_BUILD)/$$t.log | tail -30; \
	    echo "fuzz: $$t FAILED (input in $(FUZZ_BUILD)/artifacts/)"; \
	  fi; \
	done; \
	test $$bad -eq 0
endef

fuzz: fuzz-build
	$(call fuzz_run,$(FUZZ_SECONDS))

fuzz-short: fuzz-build
	$(call fuzz_run,10)

# Each file once, as a plain input (nothing is written); every failing
# file is named, its output kept in $(FUZZ_BUILD)/regress-<target>-<file>.log.
fuzz-regress: fuzz-build
	@bad=0; for t in $(FUZZ_TARGETS); do \
	  n=0; for f in fuzz/regress/$$t/* fuzz/corpus/$$t/*; do \
	    test -f "$$f" || continue; n=$$((n + 1)); \
	    log=$(FUZZ_BUILD)/regress-$$t-$$(basename $$f).log; \
	    if $(FUZZ_ENV) $(FUZZ_BUILD)/$$t "$$f" > $$log 2>&1; then rm -f $$log; \
	    else \
	      bad=$$((bad + 1)); echo "fuzz-regress: FAIL $$f"; \
	      grep -E 'runtime error|MISMATCH|ERROR: Address|^(copy|recv)_fuzz: [^R]' $$log | head -3 | sed 's/^/    /'; \
	    fi; \
	  done; \
	  echo "fuzz-regress: $$t: $$n inputs replayed"; \
	done; \
	test $$bad -eq 0 || { echo "fuzz-regress: $$bad failing (logs in $(FUZZ_BUILD)/)"; exit 1; }
