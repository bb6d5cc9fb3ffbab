# Flotilla build, test and benchmark entry points. `make help` lists them.

GO       ?= go
SEEDS    ?= 200
PKGS     := ./...
RACE_PKGS := ./multiraft/... ./shard/...

.PHONY: help demo test test-unit test-race sim bench-engine lint build

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

demo: ## run a local fleet with placement and a workload (not built yet)
	@echo "make demo: not yet — the shardnode, placementd and router land in issues 3 and 4."
	@echo "Today: 'make test' runs the engine, state machine and simulator; 'make sim SEEDS=N' runs the simulator."

build: ## compile every package
	$(GO) build $(PKGS)

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

test: lint test-unit test-race sim ## everything CI runs

test-unit: ## unit tests of every package
	$(GO) test -count=1 $(PKGS)

test-race: ## race detector on the packages with concurrency
	$(GO) test -count=1 -race $(RACE_PKGS)

sim: ## deterministic simulator: SEEDS=N seeds of faults, checked with porcupine
	$(GO) test -count=1 -run '^TestSimulation$$' ./internal/sim -seeds=$(SEEDS) -timeout=60m

bench-engine: ## engine benchmarks (median of 3 runs each)
	$(GO) test -run '^$$' -bench . -benchtime=1x -count=3 ./multiraft/bench/

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
