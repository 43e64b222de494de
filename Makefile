# vigil: build everything out of tree into $(BUILD).
#   make            build/vigil-agent, build/vigil (and build/vigil-server once it exists)
#   make test       unit tests (plain and ASan+UBSan), fuzz smoke, system tests
#   make bench      benchmarks (bench/), results side by side
#   make run        the demo: server, signed content rolled out to an agent on this host
#   make fuzz       every fuzz target for FUZZ_SECONDS each

BUILD      ?= build
SAN        ?=
CC         ?= cc
CXX        ?= c++
CLANG      ?= clang
CLANGXX    ?= clang++
BPFTOOL    ?= bpftool
PYTHON     ?= /usr/bin/python3
FUZZ_SECONDS ?= 60
# The agent's integer sensor build number, stamped into the executable (src/agent/sensor.c):
# what it reports, and the version of the sensor bundle that carries it.
SENSOR_BUILD ?= 1
ARCH       := $(shell uname -m | sed 's/x86_64/x86/; s/aarch64/arm64/')

PKGS       := libbpf libsodium yaml-0.1 jansson libhs re2 libseccomp libcurl
CFLAGS     ?= -O2 -g
CFLAGS     += -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Wshadow -Wformat=2 \
              -Wstrict-prototypes -Werror=implicit-function-declaration -Werror=vla \
              -fstack-protector-strong -D_FORTIFY_SOURCE=2 -D_GNU_SOURCE -pthread \
              -I$(BUILD)/bpf -Isrc $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS     := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lstdc++ -lelf -lz -lm -pthread
# the few C++ files (src/lib/rx.cc: the C interface to RE2) take the C flags that apply to C++
CXXFLAGS   = $(filter-out -std=gnu11 -Wstrict-prototypes -Werror=implicit-function-declaration,\
               $(CFLAGS)) -std=c++14

ifeq ($(SAN),1)
CC         := $(CLANG)
CXX        := $(CLANGXX)
CFLAGS     += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all \
              -U_FORTIFY_SOURCE -DVIGIL_SANITIZED
LDFLAGS    += -fsanitize=address,undefined
endif
# Test-only fault hooks: never compiled into release binaries.
ifeq ($(TEST_HOOKS),1)
CFLAGS     += -DVIGIL_TEST_HOOKS
endif

LIB_SRCS    := $(wildcard src/lib/*.c) $(wildcard src/lib/*.cc)
AGENT_SRCS  := $(wildcard src/agent/*.c)
CLI_SRCS    := $(wildcard src/cli/*.c)
SERVER_SRCS := $(wildcard src/server/*.c)
BPF_SRCS    := $(wildcard src/bpf/*.bpf.c)
UNIT_SRCS   := $(wildcard tests/unit/test_*.c)
FUZZ_SRCS   := $(wildcard tests/fuzz/fuzz_*.c)

LIB_OBJS    := $(patsubst %.cc,$(BUILD)/obj/%.o,$(LIB_SRCS:%.c=$(BUILD)/obj/%.o))
AGENT_OBJS  := $(AGENT_SRCS:%.c=$(BUILD)/obj/%.o)
CLI_OBJS    := $(CLI_SRCS:%.c=$(BUILD)/obj/%.o)
SERVER_OBJS := $(SERVER_SRCS:%.c=$(BUILD)/obj/%.o)
SKELS       := $(BPF_SRCS:src/bpf/%.bpf.c=$(BUILD)/bpf/%.skel.h)
UNIT_BINS   := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_BINS   := $(FUZZ_SRCS:tests/fuzz/%.c=$(BUILD)/fuzz/%)

PROGRAMS    := $(BUILD)/vigil-agent $(BUILD)/vigil
ifneq ($(SERVER_SRCS),)
PROGRAMS    += $(BUILD)/vigil-server
endif

.PHONY: all test unit system fuzz fuzz-build bench run setup clean format testhooks
all: $(PROGRAMS)

setup:
	@./scripts/setup.sh

# --- BPF: vmlinux.h from this host's BTF, .bpf.c -> .bpf.o -> skeleton ---
$(BUILD)/bpf/vmlinux.h:
	@mkdir -p $(dir $@)
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp && mv $@.tmp $@

$(BUILD)/bpf/%.bpf.o: src/bpf/%.bpf.c $(wildcard src/bpf/*.h) $(BUILD)/bpf/vmlinux.h
	$(CLANG) -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) -I$(BUILD)/bpf -Isrc/bpf \
		-Wall -Wno-unused-function -c $< -o $@

$(BUILD)/bpf/%.skel.h: $(BUILD)/bpf/%.bpf.o
	$(BPFTOOL) gen skeleton $< > $@.tmp && mv $@.tmp $@

# --- C objects ---
$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# C++ objects: without the sanitizer checks that need its C++ runtime, which a C link lacks
CXX_NO_CXX_SAN := -fno-sanitize=vptr,function
$(BUILD)/obj/%.o: %.cc
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) $(if $(filter 1,$(SAN)),$(CXX_NO_CXX_SAN)) -MMD -MP -c $< -o $@

$(AGENT_OBJS): $(SKELS)
$(BUILD)/obj/src/agent/sensor.o $(BUILD)/testhooks/obj/src/agent/sensor.o: \
	CFLAGS += -DVIGIL_SENSOR_BUILD=$(SENSOR_BUILD)
# a stamp file per build number, so that changing SENSOR_BUILD recompiles the stamp
SENSOR_BUILD_FILE := $(BUILD)/obj/sensor-build-$(SENSOR_BUILD)
$(SENSOR_BUILD_FILE):
	@mkdir -p $(dir $@)
	@rm -f $(BUILD)/obj/sensor-build-*
	@touch $@
$(BUILD)/obj/src/agent/sensor.o $(BUILD)/testhooks/obj/src/agent/sensor.o: $(SENSOR_BUILD_FILE)

$(BUILD)/libvigil.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/vigil-agent: $(AGENT_OBJS) $(BUILD)/libvigil.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The agent with the test-only fault hooks (VIGIL_TEST_HOOKS: crash on a marked bundle, pause
# at an activation step), for the activation system tests. Never installed or shipped.
HOOK_OBJS   := $(AGENT_SRCS:%.c=$(BUILD)/testhooks/obj/%.o)
$(BUILD)/testhooks/obj/%.o: %.c $(SKELS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DVIGIL_TEST_HOOKS -MMD -MP -c $< -o $@

$(BUILD)/testhooks/vigil-agent: $(HOOK_OBJS) $(BUILD)/libvigil.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

testhooks: $(BUILD)/testhooks/vigil-agent

$(BUILD)/vigil: $(CLI_OBJS) $(BUILD)/libvigil.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/vigil-server: $(SERVER_OBJS) $(BUILD)/libvigil.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lmicrohttpd -lsqlite3

# --- unit tests (cmocka), one binary per tests/unit/test_*.c ---
$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libvigil.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libvigil.a $(LDFLAGS) $(LDLIBS) -lcmocka

# server unit tests link the server's objects (all but its main)
SERVER_LIB_OBJS := $(filter-out $(BUILD)/obj/src/server/main.o,$(SERVER_OBJS))
$(BUILD)/tests/test_server_%: tests/unit/test_server_%.c $(SERVER_LIB_OBJS) $(BUILD)/libvigil.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(SERVER_LIB_OBJS) $(BUILD)/libvigil.a $(LDFLAGS) $(LDLIBS) \
		-lmicrohttpd -lsqlite3 -lcmocka

# agent unit tests link the agent file they test: test_agent_NAME links src/agent/NAME.c
$(BUILD)/tests/test_agent_%: tests/unit/test_agent_%.c $(BUILD)/obj/src/agent/%.o \
		$(BUILD)/libvigil.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/obj/src/agent/$*.o $(BUILD)/libvigil.a $(LDFLAGS) \
		$(LDLIBS) -lcmocka

unit: $(UNIT_BINS)
	@./tests/run-unit.sh $(UNIT_BINS)

# --- fuzz targets (libFuzzer + ASan + UBSan) ---
# libvigil is instrumented once; each target links it with its own harness.
FUZZ_CFLAGS := $(filter-out -O2 -D_FORTIFY_SOURCE=2,$(CFLAGS)) -O1 -fsanitize=address,undefined
FUZZ_LIB_OBJS := $(patsubst %.cc,$(BUILD)/fuzzobj/%.o,$(LIB_SRCS:%.c=$(BUILD)/fuzzobj/%.o))
# targets for agent-side parsers link the agent file they exercise as well
FUZZ_EXTRA_fuzz_bpf_decode := $(BUILD)/fuzzobj/src/agent/bpf_decode.o
FUZZ_EXTRA_fuzz_agent_state := $(BUILD)/fuzzobj/src/agent/state.o
FUZZ_EXTRA_fuzz_agent_reply := $(BUILD)/fuzzobj/src/agent/uplink_proto.o
FUZZ_EXTRA_fuzz_agent_spool := $(BUILD)/fuzzobj/src/agent/spool.o
FUZZ_EXTRA_fuzz_agent_sensor_state := $(BUILD)/fuzzobj/src/agent/sensor_state.o
# and targets for the server's request bodies link its parsers
FUZZ_EXTRA_fuzz_server_enroll := $(BUILD)/fuzzobj/src/server/proto.o
FUZZ_EXTRA_fuzz_server_heartbeat := $(BUILD)/fuzzobj/src/server/proto.o
FUZZ_EXTRA_fuzz_server_upload := $(BUILD)/fuzzobj/src/server/proto.o
FUZZ_EXTRA_fuzz_server_policy := $(BUILD)/fuzzobj/src/server/proto.o
FUZZ_EXTRA_fuzz_server_rollout := $(BUILD)/fuzzobj/src/server/proto.o
FUZZ_EXTRA_fuzz_server_admin := $(BUILD)/fuzzobj/src/server/proto.o

$(BUILD)/fuzzobj/%.o: %.c $(SKELS)
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(BUILD)/fuzzobj/%.o: %.cc
	@mkdir -p $(dir $@)
	$(CLANGXX) $(filter-out -std=gnu11 -Wstrict-prototypes \
		-Werror=implicit-function-declaration,$(FUZZ_CFLAGS)) -std=c++14 \
		$(CXX_NO_CXX_SAN) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

.SECONDEXPANSION:
$(BUILD)/fuzz/%: tests/fuzz/%.c $(FUZZ_LIB_OBJS) $$(FUZZ_EXTRA_$$*)
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_EXTRA_$*) $(FUZZ_LIB_OBJS) $(LDLIBS)

fuzz-build: $(FUZZ_BINS)

# `make test` gives the parsers of content and events a full minute, the others less
FUZZ_OVERRIDES ?=
fuzz: $(FUZZ_BINS)
	@./tests/run-fuzz.sh $(FUZZ_SECONDS) $(FUZZ_OVERRIDES) $(FUZZ_BINS)

# --- the README's two commands ---
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
test: setup
	$(MAKE) -j$(JOBS) all
	$(MAKE) -j$(JOBS) unit
	$(MAKE) -j$(JOBS) BUILD=$(BUILD)/asan SAN=1 unit
	$(MAKE) -j$(JOBS) fuzz-build
	$(MAKE) fuzz FUZZ_SECONDS=30 FUZZ_OVERRIDES="fuzz_rules=60 fuzz_event_json=60"
	$(MAKE) system

system: all testhooks
	$(PYTHON) -m pytest -q tests/system

# Rule-engine benchmark: the engine against a naive evaluator (bench/engine_bench.c, naive.c).
$(BUILD)/bench/engine_bench: bench/engine_bench.c bench/naive.c bench/naive.h $(BUILD)/libvigil.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ bench/engine_bench.c bench/naive.c $(BUILD)/libvigil.a $(LDFLAGS) \
		$(LDLIBS) -lpcre2-8

bench: $(BUILD)/bench/engine_bench
bench: setup all
	./bench/run.sh

run: setup all
	BUILD="$(BUILD)" ./scripts/demo.sh

format:
	clang-format -i $(LIB_SRCS) $(AGENT_SRCS) $(CLI_SRCS) $(SERVER_SRCS) $(wildcard src/*/*.h)

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj $(BUILD)/testhooks/obj -name '*.d' 2>/dev/null)
