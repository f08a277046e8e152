# keel - a Temporal worker written in C. `make help` lists the targets.
#
# Outputs go to build/ (build/asan/ for the sanitizer build). The Temporal API protos are fetched
# into build/proto and the OpenTelemetry (OTLP) ones into build/proto-otel by tools/fetch-protos; the targets that compile them run in a second make so
# that the list of generated files is known when that make reads this file.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := all

BUILD := build
PROTO := $(BUILD)/proto
OTEL_PROTO := $(BUILD)/proto-otel
SAN ?= 0
FUZZ_CC ?= clang
ifeq ($(SAN),1)
OUT := $(BUILD)/asan
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
else ifeq ($(SAN),fuzz)
# The libFuzzer build (make fuzz): clang, coverage for the fuzzer plus ASan and UBSan, into
# build/fuzz/. Only the fuzz targets link the fuzzer's runtime (-fsanitize=fuzzer).
OUT := $(BUILD)/fuzz
CC := $(FUZZ_CC)
SANFLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
            -fno-sanitize-recover=all
# clang, unlike gcc, warns where the generated *__INIT macros name deprecated Temporal fields.
MODE_WARN := -Wno-deprecated-declarations
else
OUT := $(BUILD)
SANFLAGS :=
endif

CC ?= gcc
# LIB_PKGS: what libkeel itself (src/) links; the rest is for the activities, keelctl and tests.
LIB_PKGS := libnghttp2 libssl libcrypto libprotobuf-c libcjson libpcre2-8 libmicrohttpd libcurl
PKGS := $(LIB_PKGS) libpq libcrypto
TEST_PKGS := check
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm
LIB_PKG_LIBS := $(shell pkg-config --libs $(LIB_PKGS) 2>/dev/null) -lm
TEST_LIBS := $(shell pkg-config --libs $(TEST_PKGS) 2>/dev/null)

# -std=c11, not gnu11: GNU mode predefines `linux`, which the Temporal API uses as a field name.
WARN := -Wall -Wextra -Werror $(MODE_WARN)
CFLAGS ?= -O2 -g
# -fPIC: the same objects make libkeel.a and libkeel.so.
ALL_CFLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -fPIC $(WARN) $(CFLAGS) $(SANFLAGS) \
              -Iinclude -Isrc -I. -I$(PROTO)/gen -I$(OTEL_PROTO)/gen -Itests/support $(PKG_CFLAGS) -MMD -MP
LDFLAGS_ALL := $(SANFLAGS) $(LDFLAGS)

LIB_SRCS := $(filter-out %_main.c,$(wildcard src/*.c src/*/*.c))
# The business workflows (against include/keel only), linked into the worker, keelctl and tests.
APP_SRCS := $(wildcard workflows/*.c)
# The activities (LLM, tools, ledger), and the SQL they carry, compiled in by tools/embed.
ACT_SRCS := $(wildcard activities/*.c)
MIGRATIONS := $(sort $(wildcard activities/migrations/*.sql))
EMBED := $(BUILD)/bin/keel-embed
EMBEDDED := $(OUT)/embedded/embedded_sql.c
GEN_SRCS := $(shell find $(PROTO)/gen -name '*.pb-c.c' 2>/dev/null | sort)
OTEL_GEN_SRCS := $(shell find $(OTEL_PROTO)/gen -name '*.pb-c.c' 2>/dev/null | sort)
UNIT_SRCS := $(wildcard tests/unit/*.c)
INTEGRATION_SRCS := $(wildcard tests/integration/*.c)
TEST_SUPPORT := tests/support/check_main.c

obj = $(patsubst %.c,$(OUT)/obj/%.o,$(1))

# Short lines (CC file, LINK file) unless V=1: the link lines alone are pages of -labsl_*.
ifeq ($(V),1)
Q :=
say :=
else
Q := @
say = echo "  $(1)	$(2)";
endif
LIB := $(OUT)/libkeel.a
# The shared library's version is keel's (include/keel/version.h); its soname carries the ABI's
# major number only, raised on every incompatible change (docs/install.md, "Versioning").
KEEL_VERSION := $(shell sed -nE 's/^\#define KEEL_VERSION +"([^"]+)".*/\1/p' include/keel/version.h)
KEEL_SOVERSION := 1
SONAME := libkeel.so.$(KEEL_SOVERSION)
SHLIB := $(OUT)/libkeel.so.$(KEEL_VERSION)
APPS := $(OUT)/libkeel-workflows.a
ACTS := $(OUT)/libkeel-activities.a
KEELCTL := $(OUT)/bin/keelctl
WORKER := $(OUT)/bin/keel-worker
BENCH := $(OUT)/bin/keel-bench
UNIT := $(OUT)/tests/unit
INTEGRATION := $(OUT)/tests/integration
INTEROP_WORKER := $(OUT)/tests/interop-worker

DEVSTACK := tools/devstack

.PHONY: help all deps protos binaries test test-unit test-integration test-interop test-la-ts-replay test-asan check \
        test-model-server \
        run stop bench \
        worker devstack-up devstack-down devstack-status format format-check \
        determinism-check clean distclean

help: ## List the targets
	@echo "keel - a Temporal worker in C"
	@echo
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  make \1\t\2/' | expand -t 28
	@echo
	@echo "  SAN=1 builds with AddressSanitizer and UBSan into build/asan/; V=1 prints full commands."

NPROC := $(shell nproc 2>/dev/null || echo 2)

all: protos ## Build libkeel, keelctl, keel-worker and the tests
	@$(MAKE) --no-print-directory $(if $(findstring j,$(firstword $(filter-out --%,$(MAKEFLAGS)))),,-j$(NPROC)) binaries

deps: ## Install the Debian packages keel needs (no-op when present)
	@tools/install-deps

protos: ## Fetch the pinned Temporal API and OpenTelemetry protos and generate protobuf-c code
	@tools/fetch-protos $(PROTO)
	@tools/fetch-protos $(OTEL_PROTO) proto/otel.pin proto/otel-protos.list

binaries: $(LIB) $(if $(filter 0,$(SAN)),$(SHLIB)) $(APPS) $(ACTS) $(KEELCTL) $(WORKER) $(BENCH) $(UNIT) $(INTEGRATION) \
          $(if $(wildcard tests/interop/*.c),$(INTEROP_WORKER))

LIB_OBJS := $(call obj,$(LIB_SRCS)) $(patsubst $(PROTO)/gen/%.c,$(OUT)/obj/gen/%.o,$(GEN_SRCS)) \
            $(patsubst $(OTEL_PROTO)/gen/%.c,$(OUT)/obj/gen-otel/%.o,$(OTEL_GEN_SRCS))

$(LIB): $(LIB_OBJS)
	@mkdir -p $(@D)
	@rm -f $@
	$(Q)$(call say,AR,$@)$(AR) rcs $@ $^

# Exports exactly the functions include/keel/ declares (tools/install/public-symbols): internal
# keel_ functions and the generated protobuf-c code stay inside. -z defs: nothing left undefined,
# so LIB_PKGS (keel.pc's private requirements) must name everything src/ uses.
$(OUT)/libkeel.map: $(wildcard include/keel/*.h) tools/install/public-symbols
	@mkdir -p $(@D)
	$(Q)$(call say,GEN,$@){ echo '{ global:'; tools/install/public-symbols $(CC) | sed 's/$$/;/'; \
	  echo 'local: *; };'; } > $@.tmp && mv $@.tmp $@

# The soname is in the file, not its name: a changed KEEL_SOVERSION must relink it.
SONAME_STAMP := $(OUT)/obj/.soname
$(shell mkdir -p $(OUT)/obj && echo '$(SONAME)' | cmp -s - $(SONAME_STAMP) || \
  echo '$(SONAME)' > $(SONAME_STAMP))

$(SHLIB): $(LIB_OBJS) $(OUT)/libkeel.map $(SONAME_STAMP)
	@mkdir -p $(@D)
	$(Q)$(call say,LINK,$@)$(CC) $(LDFLAGS_ALL) -shared -Wl,-soname,$(SONAME) \
	  -Wl,--version-script=$(OUT)/libkeel.map -Wl,-z,defs -o $@ $(filter %.o,$^) $(LIB_PKG_LIBS)
	@ln -sf $(notdir $@) $(OUT)/$(SONAME)
	@ln -sf $(SONAME) $(OUT)/libkeel.so

$(APPS): $(call obj,$(APP_SRCS))
	@mkdir -p $(@D)
	@rm -f $@
	$(Q)$(call say,AR,$@)$(AR) rcs $@ $^

$(ACTS): $(call obj,$(ACT_SRCS)) $(OUT)/obj/embedded/embedded_sql.o
	@mkdir -p $(@D)
	@rm -f $@
	$(Q)$(call say,AR,$@)$(AR) rcs $@ $^

# Built without sanitizers: it runs at build time only.
$(EMBED): tools/embed/embed.c
	@mkdir -p $(@D)
	$(Q)$(call say,CC,$<)$(CC) -std=c11 $(WARN) -O2 -o $@ $<

$(EMBEDDED): $(EMBED) $(MIGRATIONS) activities/seed.sql
	@mkdir -p $(@D)
	$(Q)$(call say,EMBED,$@)$(EMBED) --migrations $(MIGRATIONS) --seed activities/seed.sql > $@.tmp
	@mv $@.tmp $@

$(OUT)/obj/embedded/embedded_sql.o: $(EMBEDDED) $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(Q)$(call say,CC,$<)$(CC) $(ALL_CFLAGS) -c $< -o $@

# Objects are rebuilt when the compiler flags change, not only their sources: the stamp is
# rewritten only when the flags differ from the last build's.
FLAGS_STAMP := $(OUT)/obj/.cflags
$(shell mkdir -p $(OUT)/obj && echo '$(CC) $(ALL_CFLAGS)' | cmp -s - $(FLAGS_STAMP) || \
  echo '$(CC) $(ALL_CFLAGS)' > $(FLAGS_STAMP))

$(OUT)/obj/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(Q)$(call say,CC,$<)$(CC) $(ALL_CFLAGS) -c $< -o $@

$(OUT)/obj/gen/%.o: $(PROTO)/gen/%.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(Q)$(call say,CC,$<)$(CC) $(ALL_CFLAGS) -c $< -o $@

$(OUT)/obj/gen-otel/%.o: $(OTEL_PROTO)/gen/%.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(Q)$(call say,CC,$<)$(CC) $(ALL_CFLAGS) -c $< -o $@

$(KEELCTL): $(call obj,$(wildcard tools/keelctl/*.c)) $(APPS) $(ACTS) $(LIB)
	@mkdir -p $(@D)
	$(Q)$(call say,LINK,$@)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS)

$(WORKER): $(call obj,src/worker/keel_worker_main.c) $(APPS) $(ACTS) $(LIB)
	@mkdir -p $(@D)
	$(Q)$(call say,LINK,$@)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS)

$(INTEROP_WORKER): $(call obj,$(wildcard tests/interop/*.c)) $(LIB)
	@mkdir -p $(@D)
	$(Q)$(call say,LINK,$@)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS)

$(BENCH): $(call obj,$(wildcard tools/bench/*.c)) $(LIB)
	@mkdir -p $(@D)
	$(Q)$(call say,LINK,$@)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS)

$(UNIT): $(call obj,$(UNIT_SRCS) $(TEST_SUPPORT)) $(APPS) $(ACTS) $(LIB)
	@mkdir -p $(@D)
	$(Q)$(call say,LINK,$@)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS) $(TEST_LIBS)

$(INTEGRATION): $(call obj,$(INTEGRATION_SRCS) $(TEST_SUPPORT)) $(APPS) $(ACTS) $(LIB)
	@mkdir -p $(@D)
	$(Q)$(call say,LINK,$@)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS) $(TEST_LIBS)

# ---- tests ----

# Sanitizer runs: halt on the first UBSan report, and leave third-party leaks to the list in
# tests/support/lsan.supp.
export UBSAN_OPTIONS := print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS := suppressions=$(abspath tests/support/lsan.supp):print_suppressions=0

test-unit: all ## Run the unit tests (no server needed)
	$(UNIT)

# The TLS suite goes through nginx in front of the dev stack (tests/support/tls-proxy); the agent
# suites call keel's offline model server (tools/model-server), on its own port so that a demo's
# server can run beside it, with an API key so that the tests can look for it in logs.
TLS_PROXY_DIR := $(abspath $(BUILD)/run/tls-proxy)
TEST_MODEL_DIR := $(abspath $(BUILD)/run/test-model-server)
TEST_MODEL_PORT := 8398
TEST_MODEL_KEY := sk-keel-test-0123456789abcdef

test-integration: all devstack-up ## Run the integration tests against the dev stack
	@tests/support/tls-proxy up $(TLS_PROXY_DIR)
	@KEEL_MODEL_SERVER_PORT=$(TEST_MODEL_PORT) KEEL_MODEL_SERVER_KEY=$(TEST_MODEL_KEY) \
	  tools/model-server/run up $(TEST_MODEL_DIR)
	eval "$$($(DEVSTACK) env)" && KEELCTL=$(abspath $(KEELCTL)) \
	  KEEL_TLS_PROXY_DIR=$(TLS_PROXY_DIR) INTEROP_WORKER=$(abspath $(INTEROP_WORKER)) \
	  KEEL_WORKER=$(abspath $(WORKER)) KEEL_MODEL_SERVER_URL=http://127.0.0.1:$(TEST_MODEL_PORT) \
	  $(INTEGRATION); \
	  rc=$$?; tests/support/tls-proxy down $(TLS_PROXY_DIR); \
	  tools/model-server/run down $(TEST_MODEL_DIR); exit $$rc

# The same integration suites against Temporal on PostgreSQL: tests/postgres-store/run starts a
# second stack (tools/devstack up --store postgres in build/run-pg, ports +100: Temporal
# 127.0.0.1:7333, PostgreSQL 54429), runs each command of PGSTORE_CHECKS in its environment and
# always stops it: the integration suites, then the multi-worker test (tests/multiworker/run).
# A check that should also run on the PostgreSQL store is one more word here.
PGSTORE_CHECKS := tests/postgres-store/integration tests/multiworker/run
PGSTORE_ENV = KEELCTL=$(abspath $(KEELCTL)) KEEL_WORKER=$(abspath $(WORKER)) \
  INTEGRATION=$(abspath $(INTEGRATION)) INTEROP_WORKER=$(abspath $(INTEROP_WORKER)) \
  PGSTORE_STACK_KEELCTL=$(abspath $(BUILD)/bin/keelctl)

.PHONY: test-postgres-store
test-postgres-store: all ## Integration suites and the multi-worker test against Temporal on PostgreSQL
	@$(MAKE) --no-print-directory SAN=0 all
	$(PGSTORE_ENV) tests/postgres-store/run $(PGSTORE_CHECKS)

test-model-server: ## Test the offline model server on its own (no build needed)
	tests/model-server/run-tests

# keel's local activity histories in the TypeScript SDK's replayer (tests/interop/ts-replay/run).
test-la-ts-replay: all devstack-up ## Replay keel's local activity histories with @temporalio/worker
	eval "$$($(DEVSTACK) env)" && KEELCTL=$(abspath $(KEELCTL)) \
	  tests/interop/ts-replay/run $(abspath $(INTEGRATION))

# The official TypeScript and Go clients against a keel worker (tests/interop/run).
test-interop: all devstack-up ## Official TypeScript and Go clients start and signal runs on keel
	eval "$$($(DEVSTACK) env)" && tests/interop/run $(abspath $(INTEROP_WORKER))

# The operator's view of a waiting keel.Procurement run, read from the Web UI by headless Chromium
# (tests/webui/run, which starts its own worker from this build and a model server on port 8397);
# it saves build/webui/webui-procurement.png (docs/webui-procurement.png is updated by hand).
.PHONY: test-webui test-deploy
test-webui: all devstack-up ## Open a waiting procurement run in the Web UI with headless Chromium
	eval "$$($(DEVSTACK) env)" && KEEL_WORKER=$(abspath $(WORKER)) KEELCTL=$(abspath $(KEELCTL)) \
	  tests/webui/run

# keel-worker's /metrics end to end (tests/metrics/run): two procurement runs on a worker of its
# own with KEEL_METRICS_ADDRESS, the series and values checked, `promtool check metrics`, and a
# real Prometheus server that scrapes it and answers queries. Prometheus and promtool are built
# from the Go module proxy, pinned, on first use (tools/prometheus/install; ~/.cache/keel).
.PHONY: test-metrics
test-metrics: all devstack-up ## keel-worker's /metrics: values, promtool check metrics, a real Prometheus
	eval "$$($(DEVSTACK) env)" && KEEL_WORKER=$(abspath $(WORKER)) KEELCTL=$(abspath $(KEELCTL)) \
	  tests/metrics/run
# One trace from the official TypeScript client (with its OpenTelemetry interceptor) through a
# keel.Procurement run, read back from Jaeger (tools/devstack jaeger; docs/observability.md).
.PHONY: test-trace
test-trace: all devstack-up ## TypeScript client -> keel -> Jaeger: check one procurement trace
	eval "$$($(DEVSTACK) env)" && KEEL_WORKER=$(abspath $(WORKER)) KEELCTL=$(abspath $(KEELCTL)) \
	  tests/trace/run

# docker-compose.yml, checked by Debian's docker-compose (needs no Docker engine).
test-deploy: ## Validate docker-compose.yml and its services with docker-compose config
	tests/deploy/check-compose

# PGSTORE_IN_TEST=0 leaves the PostgreSQL-store pass out of `make test`: `make check` runs it in
# the plain pass only (the store is the server's; the sanitizer pass would add ~6 minutes for it).
PGSTORE_IN_TEST ?= 1
test: test-unit test-model-server test-integration $(if $(filter 1,$(PGSTORE_IN_TEST)),test-postgres-store) test-interop test-la-ts-replay test-webui test-metrics test-trace test-deploy test-install test-bench-peers determinism-check ## Build, start the stack, run all tests

test-asan: ## Run all tests built with AddressSanitizer + UBSan
	@$(MAKE) --no-print-directory SAN=1 test

# The CI entry point (.ci/run): install, build, start the stack, run everything twice: plain and
# under the sanitizers, with the short chaos run and the fuzz smoke between the two (the
# integration suites against Temporal on PostgreSQL, test-postgres-store, in the plain pass only;
# SQLite, the dev stack's store, in both). Each step is
# its own make so that a fresh machine gets its packages before anything reads pkg-config.
check: ## Install deps, check formatting, run all tests plain and under sanitizers, chaos, fuzz (CI)
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory format-check
	@$(MAKE) --no-print-directory test
	@$(MAKE) --no-print-directory chaos-smoke
	@$(MAKE) --no-print-directory fuzz-smoke
	@$(MAKE) --no-print-directory PGSTORE_IN_TEST=0 test-asan

# The check runs on workflows/, and first on a fixture it must reject, so a broken check fails.
determinism-check: ## Check that workflows/ uses no clock, randomness, threads, files or network
	@out=$$(tools/check-determinism tests/fixtures/nondeterministic 2>&1) && \
	  { echo "check-determinism passed a file that calls time(), rand() and getenv()"; exit 1; }; \
	  for call in time rand getenv; do grep -q "$$call(" <<<"$$out" || \
	    { echo "check-determinism missed $$call() in the fixture"; exit 1; }; done; \
	  if grep -q 'sleep(' <<<"$$out"; then echo "check-determinism flagged a string"; exit 1; fi
	@tools/check-determinism workflows

# ---- fuzzing (libFuzzer; tests/fuzz/README.md) ----

# The targets are tests/fuzz/fuzz_*.c, built by clang with ASan and UBSan into build/fuzz/bin/
# from libkeel, workflows/ and activities/ compiled the same way (SAN=fuzz). Corpus growth goes to
# build/fuzz/corpus-work/, crashes to build/fuzz/artifacts/; tests/fuzz/ is only read.
FUZZ_NAMES := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS := $(addprefix $(BUILD)/fuzz/bin/,$(FUZZ_NAMES))
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 15
FUZZ_TARGETS ?= $(FUZZ_NAMES)

.PHONY: fuzz fuzz-build fuzz-binaries fuzz-smoke fuzz-replay

fuzz-build: protos ## Build the libFuzzer targets (clang, ASan + UBSan) into build/fuzz/bin/
	@tools/install-deps fuzz
	@$(MAKE) --no-print-directory SAN=fuzz $(if $(findstring j,$(firstword $(filter-out --%,$(MAKEFLAGS)))),,-j$(NPROC)) fuzz-binaries

fuzz-binaries: $(FUZZ_BINS) $(BUILD)/fuzz/bin/keel-fuzz-seed

# Made by the pattern rule below, but kept: they are not throwaway intermediates.
.SECONDARY: $(call obj,$(wildcard tests/fuzz/*.c))

$(BUILD)/fuzz/bin/fuzz_%: $(call obj,tests/fuzz/fuzz_%.c tests/fuzz/support.c) $(APPS) $(ACTS) $(LIB)
	@mkdir -p $(@D)
	$(Q)$(call say,LINK,$@)$(CC) $(LDFLAGS_ALL) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS)

# Writes seeds in the targets' binary formats from the project's fixtures (tests/fuzz/seed-corpus).
$(BUILD)/fuzz/bin/keel-fuzz-seed: $(call obj,tests/fuzz/seed.c) $(APPS) $(ACTS) $(LIB)
	@mkdir -p $(@D)
	$(Q)$(call say,LINK,$@)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS)

fuzz: fuzz-build ## Run every fuzz target FUZZ_SECONDS (60) seconds each (FUZZ_TARGETS picks some)
	tests/fuzz/run fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-smoke: fuzz-build ## Replay every regression and seed input, then fuzz each target briefly
	tests/fuzz/run smoke $(FUZZ_SMOKE_SECONDS) $(FUZZ_TARGETS)

fuzz-replay: fuzz-build ## Run each committed regression and seed input once through its target
	tests/fuzz/run replay 0 $(FUZZ_TARGETS)

# ---- benchmarks (never part of the tests: numbers are measured, not asserted) ----

# Each configuration of --configs (off, metrics) runs the same workflows in the same process,
# --rounds times in turn; the summary line compares their CPU-seconds per 1,000 workflows.
# The tracing configurations export to the dev stack's Jaeger (tools/devstack jaeger: built from
# the Go module proxy the first time, several minutes).
# BENCH_STORE chooses Temporal's store: sqlite (the dev stack) or postgres (the second stack of
# tests/postgres-store/run, started for the run and stopped after it). Either way keel-bench also
# prints the Temporal server process's CPU seconds per round (KEEL_BENCH_SERVER_PID_FILE), and on
# postgres the CPU seconds of Temporal's PostgreSQL (KEEL_BENCH_DB_PID_FILE; on sqlite the
# database is inside the server process).
BENCH_ARGS ?= --workflows 300 --concurrency 8 --configs off,metrics,tracing,both --rounds 5
BENCH_STORE ?= sqlite
ifeq ($(filter sqlite postgres,$(BENCH_STORE)),)
$(error BENCH_STORE=$(BENCH_STORE): sqlite or postgres)
endif
BENCH_RUN = $(DEVSTACK) jaeger && KEEL_BENCH_SERVER_PID_FILE=$$($(DEVSTACK) pid-file temporal) \
  $(if $(filter postgres,$(BENCH_STORE)),KEEL_BENCH_DB_PID_FILE=$$($(DEVSTACK) pid-file postgres)) \
  OTEL_EXPORTER_OTLP_ENDPOINT=$${OTEL_EXPORTER_OTLP_ENDPOINT:-http://127.0.0.1:$${KEEL_JAEGER_OTLP_PORT:-4318}} \
  $(abspath $(BENCH)) $(BENCH_ARGS)

bench: all $(if $(filter sqlite,$(BENCH_STORE)),devstack-up) ## Measure workflows/s, CPU-s per 1,000 workflows (metrics, tracing off vs on), server CPU; BENCH_STORE=sqlite|postgres
ifeq ($(BENCH_STORE),postgres)
	@$(MAKE) --no-print-directory SAN=0 all
	$(PGSTORE_ENV) tests/postgres-store/run '$(BENCH_RUN)'
else
	eval "$$($(DEVSTACK) env)" && $(BENCH_RUN)
endif

# ---- the peer benchmark (tools/bench-peers; docs/performance.md) ----

# keel, the Go SDK worker (go.temporal.io/sdk, the version tests/interop pins, from the Go module
# proxy) and the TypeScript SDK worker (@temporalio/worker, the same release, from npm) run the same
# workloads in rotating rounds, started and measured by one starter (the Go binary's `drive`):
# worker CPU, RSS and threads from /proc, workflow-task latencies and sticky hits from the
# histories, replay of one long history each. It writes build/bench-peers/results.{md,json}.
# The Go and TypeScript workers are built once into build/bench-peers/ and rebuilt only when
# their sources or pins change. Knobs: BENCH_PEERS_ROUNDS (3), BENCH_PEERS_N (1000 one-activity
# workflows, and as many open runs for the signal burst: BENCH_PEERS_OPEN),
# BENCH_PEERS_WORKLOADS (one,burst,chain,tool), BENCH_PEERS_IMPLS (keel,go,ts),
# BENCH_PEERS_ARGS (more flags: -chain 300 -steps 20 -tool-runs 5 -replays 7 -concurrency 16).
PEERS_OUT := $(BUILD)/bench-peers
PEERS_KEEL := $(OUT)/bin/keel-bench-peers
PEERS_GO := $(PEERS_OUT)/bin/bench-peers-go
PEERS_TS := $(PEERS_OUT)/ts
PEERS_TS_SRC := tools/bench-peers/ts
BENCH_PEERS_ROUNDS ?= 3
BENCH_PEERS_N ?= 1000
BENCH_PEERS_OPEN ?= $(BENCH_PEERS_N)
BENCH_PEERS_WORKLOADS ?= one,burst,chain,tool
BENCH_PEERS_IMPLS ?= keel,go,ts
BENCH_PEERS_ARGS ?=

.PHONY: bench-peers test-bench-peers bench-peers-build

$(PEERS_KEEL): $(call obj,$(wildcard tools/bench-peers/keel/*.c)) $(LIB)
	@mkdir -p $(@D)
	$(Q)$(call say,LINK,$@)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS)

$(PEERS_GO): $(wildcard tools/bench-peers/go/*.go) tools/bench-peers/go/go.mod tools/bench-peers/go/go.sum
	@mkdir -p $(@D)
	cd tools/bench-peers/go && PATH="$$PATH:/usr/local/go/bin" GOFLAGS="$${GOFLAGS:-} -buildvcs=false" \
	  timeout 600 go build -o $(abspath $@) .

$(PEERS_TS)/node_modules/.package-lock.json: $(PEERS_TS_SRC)/package.json $(PEERS_TS_SRC)/package-lock.json
	@mkdir -p $(PEERS_TS)
	cp $^ $(PEERS_TS)/
	cd $(PEERS_TS) && timeout 300 npm ci --prefer-offline --no-audit --no-fund --loglevel=error
	@touch $@

$(PEERS_TS)/workflow-bundle.js: $(PEERS_TS)/node_modules/.package-lock.json $(PEERS_TS_SRC)/workflows.js $(PEERS_TS_SRC)/worker.mjs
	cp $(PEERS_TS_SRC)/workflows.js $(PEERS_TS_SRC)/worker.mjs $(PEERS_TS)/
	cd $(PEERS_TS) && node worker.mjs bundle workflow-bundle.tmp >bundle.log 2>&1 && mv workflow-bundle.tmp workflow-bundle.js

bench-peers-build: $(PEERS_KEEL) $(PEERS_GO) $(PEERS_TS)/workflow-bundle.js

PEERS_DRIVE = eval "$$($(DEVSTACK) env)" && $(abspath $(PEERS_GO)) drive \
  -keel '$(abspath $(PEERS_KEEL))' -go '$(abspath $(PEERS_GO))' -ts 'node $(abspath $(PEERS_TS))/worker.mjs'

bench-peers: all devstack-up bench-peers-build ## keel vs the Go and TS SDK workers (BENCH_PEERS_ROUNDS, _N, _WORKLOADS, _IMPLS)
	$(PEERS_DRIVE) -rounds $(BENCH_PEERS_ROUNDS) -n $(BENCH_PEERS_N) -open $(BENCH_PEERS_OPEN) \
	  -workloads $(BENCH_PEERS_WORKLOADS) -impls $(BENCH_PEERS_IMPLS) -out $(PEERS_OUT) $(BENCH_PEERS_ARGS)

# The smoke that make test runs: every workload once on every implementation at N=20; it checks
# that each completed every workflow and that every number is finite, never what the numbers are.
test-bench-peers: all devstack-up bench-peers-build ## The peer benchmark's smoke: N=20, 1 round, all workloads
	$(PEERS_DRIVE) -rounds 1 -n 20 -open 20 -chain 30 -steps 5 -tool-runs 1 -replays 3 -check \
	  -queue-prefix peers-smoke -out $(PEERS_OUT)/smoke

# ---- chaos (tools/chaos/chaos.py; docs/operations.md, "Chaos") ----

# Procurement runs while keel-worker is SIGKILLed, failpoints fire, the model server dies and
# keel's PostgreSQL and the Temporal server restart, on a stack of its own (build/run-chaos,
# ports moved by CHAOS_PORT_OFFSET) so that the dev stack's users are not disturbed. Knobs:
# CHAOS_RUNS, CHAOS_SEED, CHAOS_WORKERS, CHAOS_KILL_EVERY, ... (docs/operations.md). The stack's
# keelctl is the plain build's (like devstack-up); keel-worker and the replaying keelctl are
# this build's (SAN=1: the sanitizer build).
CHAOS_RUNS ?= 20
CHAOS_ENV = KEEL_WORKER=$(abspath $(WORKER)) KEELCTL=$(abspath $(KEELCTL))

.PHONY: chaos chaos-smoke
chaos: all ## Chaos test: CHAOS_RUNS procurement runs (20) while workers, model, DB, Temporal die
	@$(MAKE) --no-print-directory SAN=0 all
	@$(CHAOS_ENV) CHAOS_RUNS=$(CHAOS_RUNS) tools/chaos/chaos.py

chaos-smoke: all ## The short chaos run for make check: 20 runs, a few minutes
	@$(MAKE) --no-print-directory SAN=0 all
	@$(CHAOS_ENV) CHAOS_RUNS=20 tools/chaos/chaos.py

# ---- several workers (tests/multiworker/run; docs/operations.md, "Running several workers") ----

# Three keel-workers on one task queue of their own while procurement runs stream in: restarted one
# at a time (SIGTERM, drained, exit 0, polling again), then one SIGKILLed; every run's outcome and
# effects, no WFT failure, replay, the sticky hand-over times and the spread of the work. It takes
# its stack from `tools/devstack env` (whichever store) and starts only the workers and keel's
# model server (MW_MODEL_PORT, 8412). Knobs: MW_RUNS, MW_SUBMIT_SECONDS, ... (docs/operations.md).
.PHONY: test-multiworker
test-multiworker: all devstack-up ## Three keel-workers on one queue: rolling restart, a SIGKILL, all runs right
	@eval "$$($(DEVSTACK) env)" && KEEL_WORKER=$(abspath $(WORKER)) KEELCTL=$(abspath $(KEELCTL)) \
	  tests/multiworker/run

# ---- running ----

# The demo: the dev stack, keel-worker in the background (with the offline model server when
# OPENAI_BASE_URL is unset, said out loud) and three sample procurement requests (tools/demo).
run: ## Install deps, build, start the dev stack and keel-worker, submit three sample requests
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory devstack-up
	@tools/demo up

stop: ## Stop the keel-worker and model server that `make run` started (the dev stack stays)
	@tools/demo down

worker: all ## Build keel-worker
	@true

# The dev stack registers its namespace with the plain keelctl, whatever SAN says.
devstack-up: ## Start Temporal server, Web UI and PostgreSQL (idempotent)
	@$(MAKE) --no-print-directory SAN=0 all
	@KEELCTL=$(abspath $(BUILD)/bin/keelctl) $(DEVSTACK) up

devstack-down: ## Stop the dev stack
	@$(DEVSTACK) down

devstack-status: ## Show what the dev stack is running
	@$(DEVSTACK) status

# ---- housekeeping ----

FORMAT_FILES = $(shell git ls-files --cached --others --exclude-standard '*.c' '*.h' 2>/dev/null || find src include tools tests workflows activities -name '*.[ch]')

format: ## Reformat the C sources with clang-format
	clang-format -i $(FORMAT_FILES)

format-check: ## Fail if clang-format would change a C source
	@clang-format --dry-run --Werror $(FORMAT_FILES)

# ---- installing (docs/install.md) ----

PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DATADIR ?= $(PREFIX)/share
# What keel's public headers need from elsewhere (keel/json.h includes cJSON), and what linking
# libkeel.a statically needs.
PC_REQUIRES := libcjson
PC_REQUIRES_PRIVATE := $(filter-out libcjson,$(LIB_PKGS))

.PHONY: install uninstall test-install
install: ## Install libkeel (.a, .so), headers, keel.pc, keel-worker, keelctl, migrations (PREFIX, DESTDIR)
	@$(MAKE) --no-print-directory SAN=0 all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR)/keel \
	  $(DESTDIR)$(DATADIR)/keel/migrations
	install -m 755 $(BUILD)/bin/keel-worker $(BUILD)/bin/keelctl $(DESTDIR)$(BINDIR)/
	install -m 644 $(BUILD)/libkeel.a $(DESTDIR)$(LIBDIR)/
	install -m 755 $(BUILD)/libkeel.so.$(KEEL_VERSION) $(DESTDIR)$(LIBDIR)/
	ln -sf libkeel.so.$(KEEL_VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libkeel.so
	install -m 644 include/keel/*.h $(DESTDIR)$(INCLUDEDIR)/keel/
	install -m 644 $(MIGRATIONS) activities/seed.sql $(DESTDIR)$(DATADIR)/keel/migrations/
	sed -e 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(LIBDIR)|; s|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	  -e 's|@VERSION@|$(KEEL_VERSION)|; s|@REQUIRES@|$(PC_REQUIRES)|' \
	  -e 's|@REQUIRES_PRIVATE@|$(PC_REQUIRES_PRIVATE)|' tools/install/keel.pc.in \
	  > $(DESTDIR)$(LIBDIR)/pkgconfig/keel.pc

uninstall: ## Remove what make install put under PREFIX (same PREFIX, DESTDIR)
	rm -f $(DESTDIR)$(BINDIR)/keel-worker $(DESTDIR)$(BINDIR)/keelctl
	rm -f $(DESTDIR)$(LIBDIR)/libkeel.a $(DESTDIR)$(LIBDIR)/libkeel.so* \
	  $(DESTDIR)$(LIBDIR)/pkgconfig/keel.pc
	rm -rf $(DESTDIR)$(INCLUDEDIR)/keel $(DESTDIR)$(DATADIR)/keel

# Installs into build/install/, builds examples/hello out of tree with pkg-config, checks the
# exported symbols, and runs it against the dev stack (tests/install/run).
test-install: devstack-up ## Install into build/install, build examples/ out of tree, run it
	eval "$$($(DEVSTACK) env)" && tests/install/run

clean: ## Remove build outputs (keeps the fetched protos, the dev stack's data, fuzz corpora)
	rm -rf $(BUILD)/obj $(BUILD)/bin $(BUILD)/tests $(BUILD)/libkeel.* $(BUILD)/libkeel-*.a $(BUILD)/asan \
	  $(BUILD)/install
	rm -rf $(BUILD)/fuzz/obj $(BUILD)/fuzz/bin $(BUILD)/fuzz/embedded $(BUILD)/fuzz/*.a

distclean: devstack-down ## Remove everything under build/
	rm -rf $(BUILD)

-include $(shell find $(OUT)/obj -name '*.d' 2>/dev/null)
