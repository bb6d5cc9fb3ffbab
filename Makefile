# Flotilla build, test and benchmark entry points. `make help` lists them.

GO       ?= go
SEEDS    ?= 200
PKGS     := ./...
RACE_PKGS := ./multiraft/... ./shard/... ./router/... ./rpc/... ./placement/... ./lease/...

.PHONY: help demo test test-unit test-race sim bench-engine bench lint build browser-deps

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

DEMO_FLAGS ?=

demo: build ## start placementd and 3 shardnodes locally, run a workload through the router, print results (Ctrl-C stops; DEMO_FLAGS="--duration 30s" exits by itself)
	./bin/flotilla demo $(DEMO_FLAGS)

# The binaries' commit, passed to the linker (internal/buildinfo): the go
# command stamps none in a linked git worktree or with -buildvcs=false.
# Empty outside git, and the binaries then say "commit unknown". Evaluated
# only by the targets that build (recursive variables).
BUILDINFO := github.com/flotilla-kv/flotilla/internal/buildinfo
BUILD_REV = $(shell git rev-parse HEAD 2>/dev/null)
BUILD_MODIFIED = $(shell test -z "$$(git status --porcelain 2>/dev/null)" && echo false || echo true)
BUILD_LDFLAGS = $(if $(BUILD_REV),-ldflags "-X $(BUILDINFO).linkRevision=$(BUILD_REV) -X $(BUILDINFO).linkModified=$(BUILD_MODIFIED)")

build: ## compile every package and put the binaries in ./bin
	$(GO) build $(PKGS)
	$(GO) build $(BUILD_LDFLAGS) -o bin/ ./cmd/...

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

test: browser-deps lint test-alerts test-unit-rest test-race sim-test fuzz-short chaos-short test-etcd-compat ## everything CI runs

browser-deps: ## install headless Chromium (Debian's package) for the status page test, if missing
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

# The Prometheus alerting rules: promtool (Debian's prometheus package,
# installed if missing, without its recommends) checks them and runs
# their unit tests, deploy/prometheus/alerts_test.yaml.
.PHONY: test-alerts
test-alerts: ## check and unit-test deploy/prometheus/alerts.yaml with promtool
	@command -v promtool >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null)
	promtool check rules deploy/prometheus/alerts.yaml
	cd deploy/prometheus && promtool test rules alerts_test.yaml

test-unit: ## unit tests of every package
	$(GO) test -count=1 $(PKGS)

# What make test runs for unit tests: the packages outside RACE_PKGS, since
# test-race runs every test of those (under the race detector) anyway.
# UNIT_TIMEOUT bounds one package's tests: cmd/flotilla's, which start
# fleets, took over go test's default 10 minutes on a 2-core machine busy
# with other work.
UNIT_TIMEOUT ?= 25m
test-unit-rest: ## unit tests of the packages test-race does not run
	$(GO) test -count=1 -timeout $(UNIT_TIMEOUT) $$($(GO) list $(PKGS) | grep -vxF "$$($(GO) list $(RACE_PKGS))")

test-race: ## race detector on the packages with concurrency
	$(GO) test -count=1 -timeout $(UNIT_TIMEOUT) -race $(RACE_PKGS)

# The etcd compatibility tests (issue 18), in test/, a module of its own
# (Kubernetes's dependencies stay out of Flotilla's): the real etcdctl
# (test/etcdctl) and the Kubernetes API server's storage conformance tests
# on its etcd3 store (test/k8s), against a fleet whose shardnodes serve the
# etcd API. etcdctl and etcd are built from the Go module proxy once, into
# .cache/. COMPAT_TARGETS: "flotilla" (the default), "etcd" (a real etcd:
# proves the tests themselves) or "etcd,flotilla".
COMPAT_TARGETS ?= flotilla
.PHONY: test-etcd-compat
test-etcd-compat: ## etcdctl and the Kubernetes storage conformance tests against Flotilla's etcd API (COMPAT_TARGETS=etcd,flotilla adds a real etcd as baseline)
	cd test && $(GO) vet ./...
	cd test && COMPAT_TARGETS=$(COMPAT_TARGETS) $(GO) test -count=1 -p 1 -timeout 20m ./...

# SIM_PROCS: processes sharing the seeds of `make sim` (default 2 from 2000
# seeds up, else 1); SIM_FLAGS: extra flags for the simulator (-progress);
# SIM_MODES: "engine fleet" (the default: SEEDS seeds of each), "engine"
# or "fleet".
SIM_PROCS ?= $(shell [ $(SEEDS) -ge 2000 ] && echo 2 || echo 1)
SIM_FLAGS ?=
SIM_MODES ?= engine fleet
sim: ## deterministic simulator: SEEDS=N seeds of the engines under faults and N of the fleet under placement (SIM_PROCS processes), checked with porcupine
	GO=$(GO) SIM_FLAGS='$(SIM_FLAGS)' SIM_MODES='$(SIM_MODES)' ./internal/sim/run.sh $(SEEDS) $(SIM_PROCS)

# What make test runs: 200 seeds of each mode, in two processes (one per
# core: a run is single-threaded, so one process leaves a core idle).
.PHONY: sim-test test-unit-rest
sim-test: ## the simulator as make test runs it: 200 engine seeds and 200 fleet seeds, in 2 processes
	GO=$(GO) SIM_FLAGS='$(SIM_FLAGS)' ./internal/sim/run.sh 200 2

bench-engine: ## engine benchmarks (median of 3 runs each)
	$(GO) test -run '^$$' -bench . -benchtime=1x -count=3 -timeout=30m ./multiraft/bench/

BENCH_FLAGS ?= --workload write --clients 100 --value-size 256 --duration 10s

bench: build ## Flotilla against etcd, 10 s per system (builds etcd once into .cache/etcd; BENCH_FLAGS="..." to change, see bench/README.md)
	./bin/flotilla bench compare $(BENCH_FLAGS)

PROTOC_GEN_GO      := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2

.PHONY: proto proto-tools
proto-tools: ## install protoc (Debian) and the Go plugins (into ./bin)
	@command -v protoc >/dev/null || (apt-get update -qq && apt-get install -y -qq protobuf-compiler)
	GOBIN=$(CURDIR)/bin $(GO) install $(PROTOC_GEN_GO)
	GOBIN=$(CURDIR)/bin $(GO) install $(PROTOC_GEN_GO_GRPC)

proto: proto-tools ## regenerate rpc/flotillapb from rpc/proto
	PATH=$(CURDIR)/bin:$$PATH protoc \
	  -I rpc/proto -I $$($(GO) list -m -f '{{.Dir}}' go.etcd.io/raft/v3) \
	  --go_out=. --go_opt=module=github.com/flotilla-kv/flotilla \
	  --go-grpc_out=. --go-grpc_opt=module=github.com/flotilla-kv/flotilla \
	  rpc/proto/flotilla/v1/*.proto

DOCKER_IMAGE ?= flotilla:dev

.PHONY: docker
docker: ## build the $(DOCKER_IMAGE) image FROM scratch over static binaries (no registry needed)
	mkdir -p .cache/docker
	CGO_ENABLED=0 $(GO) build -trimpath -o .cache/docker/ ./cmd/shardnode ./cmd/placementd ./cmd/flotilla
	docker build -q -t $(DOCKER_IMAGE) -f deploy/Dockerfile .cache/docker

# The compose fleet (deploy/compose.yaml): `docker compose` (v2) if installed, else `docker-compose` (v1).
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
FLEET   ?= flotilla
FLEET_FILES := -f deploy/compose.yaml -f deploy/compose.scale.yaml
.PHONY: fleet-up fleet-scale fleet-down test-docker
fleet-up: docker ## start the compose fleet (3 placementd, 5 shardnodes); status page on http://127.0.0.1:7080/
	$(COMPOSE) -f deploy/compose.yaml -p $(FLEET) up -d
fleet-scale: ## add shardnodes 6 and 7 (deploy/compose.scale.yaml) to the running compose fleet
	$(COMPOSE) $(FLEET_FILES) -p $(FLEET) up -d node6 node7
fleet-down: ## stop the compose fleet and delete its volumes
	$(COMPOSE) $(FLEET_FILES) -p $(FLEET) down -v --remove-orphans
test-docker: ## the compose fleet test: build the image, bring the fleet up, use it from the host, tear it down
	$(GO) test -count=1 -v -run '^TestCompose' -timeout=20m ./deploy/

# Native Go fuzz targets (package:target:executions). `make fuzz` runs each
# for FUZZTIME; `make fuzz-short`, which make test runs, runs each for its
# number of executions, about 5 s apiece on 2 cores. The short form counts
# executions because a wall-clock -fuzztime can fail a clean run with a bare
# "context deadline exceeded": Go's fuzz coordinator races its own deadline
# against its workers' shutdown (Go issue 75804, fixed in Go 1.27), and
# it lost that race once in CI. A count has no deadline to race.
FUZZTIME ?= 10s
FUZZ_TARGETS := \
	./internal/keys:FuzzUserKeys:300000 ./internal/keys:FuzzLocalKeys:300000 \
	./shard:FuzzDecodeCommand:40000 ./shard:FuzzCommandRoundTrip:40000 \
	./shard:FuzzRestore:60000 ./shard:FuzzRestoreCorruptByte:40000 \
	./shard:FuzzDescriptorRanges:20000 \
	./rpc:FuzzKVRequest:25000 ./rpc:FuzzSnapshotReceive:8000 \
	./rpc:FuzzRaftMessageCodec:15000 ./internal/framed:FuzzKVFrames:30000

.PHONY: fuzz fuzz-short
fuzz-short: ## every fuzz target for a fixed number of executions, about 5 s each (what make test runs)
	@$(MAKE) --no-print-directory fuzz-run FUZZ_BUDGET=count

fuzz: ## run every fuzz target for FUZZTIME (default 10s) each
	@$(MAKE) --no-print-directory fuzz-run FUZZ_BUDGET=time

.PHONY: fuzz-run
fuzz-run:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; rest=$${t#*:}; fn=$${rest%%:*}; n=$${rest##*:}; \
	  if [ "$(FUZZ_BUDGET)" = count ]; then budget=$${n}x; else budget=$(FUZZTIME); fi; \
	  echo "fuzz: $$pkg $$fn for $$budget"; \
	  $(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $$budget $$pkg; \
	done

CHAOS_DURATION ?= 30m
CHAOS_MODE     ?= docker
CHAOS_FLAGS    ?=
CHAOS_SHORT_FLAGS ?=

.PHONY: chaos chaos-short
chaos: ## nemesis test: real fleet, mixed faults for CHAOS_DURATION (30m) in CHAOS_MODE (docker|process), porcupine-checked; ends with "chaos: runs=N violations=V lost=L watch=W lock=K bank=B txn=T"
	$(GO) test -count=1 -v -run '^TestChaos$$' ./internal/chaos -timeout=0 -chaos.duration=$(CHAOS_DURATION) -chaos.mode=$(CHAOS_MODE) $(CHAOS_FLAGS)

chaos-short: ## nemesis test, short form for make test: about 75 s of process-mode faults
	$(GO) test -count=1 -v -run '^TestChaos$$' ./internal/chaos -timeout=10m -chaos.duration=75s -chaos.mode=process $(CHAOS_SHORT_FLAGS)
