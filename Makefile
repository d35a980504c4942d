# xtcp build.
#
#   make            engine library, libxtcp.so and every tool
#   make check      all, then every cmocka test, two demo runs, and every
#                   fuzz target for FUZZ_SECONDS (default 30) each over its corpus
#   make run-tests  the cmocka tests only; make run-fuzz: the fuzz runs only
#   make check-netns  only the tests/netns/t_*.sh scripts (ONLY=REGEX: some)
#   make asan       the tests and two demo runs again, built with ASan+UBSan, and run
#   make fuzz       the libFuzzer targets only (built, not run)
#   make bench      engine-only figures, then tools/bench.py: kernel vs xtcp servers in
#                   namespaces, same run (build/bench-engine.*, build/bench/bench.{md,json};
#                   BENCH_ARGS="--quick" or "--only redis" pass options on)
#   make clean
#
# Sources join by wildcard: stack/*.c and nic/*.c are the engine, preload/*.c
# the LD_PRELOAD library, tools/*.c one program each, tests/test_*.c one cmocka
# binary each (with tests/lib/*.c), tests/fuzz/fuzz_*.c one libFuzzer target
# each (corpus in tests/fuzz/corpus/<target>/, optional tests/fuzz/<target>.dict).

SHELL := /bin/bash

ifeq ($(origin CC),default)
CC := gcc
endif
CLANG ?= clang
AR ?= ar
FUZZ_SECONDS ?= 30

B := build

WARN := -Wall -Wextra -Werror
INCLUDES := -I. -Istack -Inic
CFLAGS ?= -O2 -g
XCFLAGS := -std=gnu11 $(WARN) $(INCLUDES) -MMD -MP
# Sanitizer builds stop at the first report so a test cannot pass over one.
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
ASAN_CFLAGS := -std=gnu11 $(WARN) $(INCLUDES) -MMD -MP -O1 -g $(SAN_FLAGS)
# Engine code in fuzz targets also gets libFuzzer's coverage instrumentation
# (fuzzer-no-link), or the fuzzer would be blind inside the code it tests.
FUZZ_CFLAGS := -std=gnu11 $(WARN) $(INCLUDES) -MMD -MP -O1 -g $(SAN_FLAGS) -fsanitize=fuzzer-no-link

ENGINE_SRCS := $(sort $(wildcard stack/*.c nic/*.c))
PRELOAD_SRCS := $(sort $(wildcard preload/*.c))
TOOL_SRCS := $(sort $(wildcard tools/*.c))
TEST_SRCS := $(sort $(wildcard tests/test_*.c))
TESTLIB_SRCS := $(sort $(wildcard tests/lib/*.c))
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/fuzz_*.c))

ENGINE_OBJS := $(ENGINE_SRCS:%.c=$(B)/obj/%.o)
PIC_OBJS := $(ENGINE_SRCS:%.c=$(B)/pic/%.o) $(PRELOAD_SRCS:%.c=$(B)/pic/%.o)
TESTLIB_OBJS := $(TESTLIB_SRCS:%.c=$(B)/obj/%.o)

ENGINE_LIB := $(B)/libxtcp_engine.a
SHLIB := $(B)/libxtcp.so
TOOLS := $(TOOL_SRCS:tools/%.c=$(B)/%)
TESTS := $(TEST_SRCS:tests/%.c=$(B)/tests/%)

ASAN_ENGINE_OBJS := $(ENGINE_SRCS:%.c=$(B)/asan/obj/%.o)
ASAN_TESTLIB_OBJS := $(TESTLIB_SRCS:%.c=$(B)/asan/obj/%.o)
ASAN_TESTS := $(TEST_SRCS:tests/%.c=$(B)/asan/tests/%)

FUZZ_ENGINE_OBJS := $(ENGINE_SRCS:%.c=$(B)/fuzz/obj/%.o)
FUZZERS := $(FUZZ_SRCS:tests/fuzz/%.c=$(B)/fuzz/%)

LDLIBS := -lm
TEST_LDLIBS := -lcmocka -lm

.PHONY: all check check-netns asan fuzz clean run-tests run-fuzz check-exports bench
.DEFAULT_GOAL := all
.DELETE_ON_ERROR:

# The libibverbs test double (tests/ibv_double): a libibverbs.so.1 with the
# real versioned symbols, loaded by the verbs backend in tests through
# XTCP_IBVERBS_LIB.  Never built with sanitizers: unsanitized tools load it.
IBV_DOUBLE := $(B)/ibv_double/libibverbs.so.1
$(IBV_DOUBLE): tests/ibv_double/ibv_double.c tests/ibv_double/xtd.h tests/ibv_double/libibverbs.map tests/ibv_double/build.sh
	CC="$(CC)" tests/ibv_double/build.sh $(B)/ibv_double

all: $(ENGINE_LIB) $(SHLIB) $(TOOLS) $(IBV_DOUBLE)

# --- engine ---------------------------------------------------------------

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(XCFLAGS) $(CFLAGS) -c $< -o $@

# Tests include their helpers as "seg.h" etc. from tests/lib/.
$(B)/obj/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	$(CC) $(XCFLAGS) -Itests/lib $(CFLAGS) -c $< -o $@

$(ENGINE_LIB): $(ENGINE_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $^

# --- libxtcp.so: PIC engine + preload, hidden by default, exports by map ----

$(B)/pic/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(XCFLAGS) $(CFLAGS) -fPIC -fvisibility=hidden -c $< -o $@

$(SHLIB): $(PIC_OBJS) preload/libxtcp.map
	@mkdir -p $(dir $@)
	$(CC) -shared -o $@ $(PIC_OBJS) -Wl,--version-script=preload/libxtcp.map \
		-Wl,-z,defs -Wl,-z,now -Wl,-z,relro -Wl,-soname,libxtcp.so $(LDLIBS)

# --- tools: one program per tools/*.c ------------------------------------

$(TOOLS): $(B)/%: $(B)/obj/tools/%.o $(ENGINE_LIB)
	$(CC) -o $@ $^ $(LDLIBS)

# --- tests ------------------------------------------------------------------

$(TESTS): $(B)/tests/%: $(B)/obj/tests/%.o $(TESTLIB_OBJS) $(ENGINE_LIB)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $^ $(TEST_LDLIBS)

$(B)/asan/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_CFLAGS) -c $< -o $@

$(B)/asan/obj/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_CFLAGS) -Itests/lib -c $< -o $@

$(B)/asan/libxtcp_engine.a: $(ASAN_ENGINE_OBJS)
	rm -f $@
	$(AR) rcs $@ $^

$(ASAN_TESTS): $(B)/asan/tests/%: $(B)/asan/obj/tests/%.o $(ASAN_TESTLIB_OBJS) $(B)/asan/libxtcp_engine.a
	@mkdir -p $(dir $@)
	$(CC) $(SAN_FLAGS) -o $@ $^ $(TEST_LDLIBS)

# --- fuzz targets: clang, libFuzzer + ASan + UBSan --------------------------

$(B)/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) -c $< -o $@

$(B)/fuzz/libxtcp_engine.a: $(FUZZ_ENGINE_OBJS)
	rm -f $@
	$(AR) rcs $@ $^

$(FUZZERS): $(B)/fuzz/%: tests/fuzz/%.c $(B)/fuzz/libxtcp_engine.a
	@mkdir -p $(dir $@)
	$(CLANG) -std=gnu11 $(WARN) $(INCLUDES) -Itests/lib -MMD -MP -O1 -g $(SAN_FLAGS) -fsanitize=fuzzer \
		-o $@ $< $(B)/fuzz/libxtcp_engine.a -lm

fuzz: $(FUZZERS)

# --- running ------------------------------------------------------------------

# tools/run-tests.sh runs everything one after another (so outputs do not
# interleave), counts results, ends with one "LABEL: N passed, N failed" line
# and fails when anything failed.  Each test has a generous timeout against
# hangs only.
DEMO_RUNS := --cmd "$(B)/xtcp-demo --bytes 64M" \
	--cmd "$(B)/xtcp-demo --bytes 8M --loss 2 --seed 7" \
	--cmd "tools/perf_breakdown.py --self-test"

# Whole-system tests: tests/netns/t_*.sh, one script each (programs under
# LD_PRELOAD in network namespaces the script makes and removes itself, with
# the kernel as peer).  Each counts as one test: exit 0 passes.
SCRIPT_TESTS := $(sort $(wildcard tests/netns/t_*.sh))
SCRIPT_RUNS := $(foreach t,$(SCRIPT_TESTS),--cmd "$(t)")

check: all $(TESTS) $(FUZZERS) check-exports
	@FUZZ_SECONDS=$(FUZZ_SECONDS) tools/run-tests.sh --label check \
		--cmocka $(TESTS) $(DEMO_RUNS) $(SCRIPT_RUNS) --fuzz $(FUZZERS)

# Only the scripts (ONLY=REGEX picks some): make check-netns ONLY=redis
check-netns: all
	@tools/run-tests.sh --label netns $(foreach t,$(if $(ONLY),$(shell printf '%s\n' $(SCRIPT_TESTS) | grep -E -- '$(ONLY)'),$(SCRIPT_TESTS)),--cmd "$(t)")

run-tests: $(TESTS) $(IBV_DOUBLE)
	@tools/run-tests.sh --label tests --cmocka $(TESTS)

# The demo under the sanitizers too: real traffic through the whole engine.
$(B)/asan/xtcp-demo: $(B)/asan/obj/tools/xtcp-demo.o $(B)/asan/libxtcp_engine.a
	$(CC) $(SAN_FLAGS) -o $@ $^ -lm

asan: $(ASAN_TESTS) $(B)/asan/xtcp-demo $(IBV_DOUBLE) $(B)/xtcp-verbs-check
	@tools/run-tests.sh --label asan --cmocka $(ASAN_TESTS) \
		--cmd "$(B)/asan/xtcp-demo --bytes 4M" \
		--cmd "$(B)/asan/xtcp-demo --bytes 2M --loss 3 --dup 1 --reorder 2 --corrupt 1 --seed 5"

run-fuzz: $(FUZZERS)
	@FUZZ_SECONDS=$(FUZZ_SECONDS) tools/run-tests.sh --label fuzz --fuzz $(FUZZERS)

# libxtcp.so must export nothing but what the map names (no engine internals).
check-exports: $(SHLIB)
	@extra=$$(nm -D --defined-only $(SHLIB) | awk '$$2 ~ /^[TDBRVWiu]$$/ {print $$3}' | \
		sed 's/@.*//' | grep -vxF -f <(sed -n 's/^[[:space:]]*\([A-Za-z_][A-Za-z0-9_]*\);.*/\1/p' preload/libxtcp.map) || true); \
	if [ -n "$$extra" ]; then echo "check-exports: unexpected exports in $(SHLIB):" $$extra; exit 1; fi; \
	echo "check-exports: $(SHLIB) exports only the symbols of preload/libxtcp.map"

# Performance figures: kernel and xtcp measured in the same run, written to
# $(B)/bench-engine.md and .json.  Not part of check: timing decides nothing there.
bench: all
	@$(B)/xtcp-bench-engine --json $(B)/bench-engine.json | tee $(B)/bench-engine.md
	@tools/bench.py --out $(B)/bench $(BENCH_ARGS)

clean:
	rm -rf $(B)

# Tools and tests are named after their sources; keep make from deleting the
# objects in between as intermediates.
.SECONDARY:

-include $(shell find $(B) -name '*.d' 2>/dev/null)
