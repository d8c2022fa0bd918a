# The two commands of the README: `make run` and `make test`.
GO          ?= go
BIN         := $(CURDIR)/bin
TEMPORAL    := $(BIN)/temporal
STATICCHECK := $(BIN)/staticcheck
STATICCHECK_VERSION := v0.8.2
# Fuzz budgets count executions: a time budget races the fuzz coordinator in go1.26
# (golang/go#75804) and fails now and then with "context deadline exceeded".
FUZZTIME    ?= 50000x
GOFILES      = $(shell find . -name '*.go' -not -path './bin/*')

.PHONY: run build test lint unit fuzz bench soak temporal tools

## run: the whole platform: dev server + Web UI, worker, api + dashboard, sample dataset, every enabled run
run: build $(TEMPORAL)
	@scripts/run.sh

## build: the worker, starter and api binaries in ./bin
build:
	$(GO) build -o $(BIN)/worker ./worker
	$(GO) build -o $(BIN)/starter ./starter
	$(GO) build -o $(BIN)/api ./api

## test: everything CI runs: formatting, vet, staticcheck, all tests, brief fuzzing
test: lint unit fuzz

lint: $(STATICCHECK)
	@bad=$$(gofmt -l $(GOFILES)); if [ -n "$$bad" ]; then echo "gofmt needed:"; echo "$$bad"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

# Test artifacts (the dashboard's screenshots) land under bin/test-output/.
unit: $(TEMPORAL)
	mkdir -p $(BIN)/test-output
	TEMPORAL_CLI=$(TEMPORAL) $(GO) test -count=1 -timeout 18m -artifacts -outputdir $(BIN)/test-output ./...

fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) ./internal/labels
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) ./internal/config
	$(GO) test -run='^$$' -fuzz='^FuzzReadCSV$$' -fuzztime=$(FUZZTIME) ./internal/dataset
	$(GO) test -run='^$$' -fuzz='^FuzzReadJSONL$$' -fuzztime=$(FUZZTIME) ./internal/dataset

# QUICK=1: the benchmarks that make the summary's headline figures, each at one short setting.
ifeq ($(QUICK),1)
BENCH_ENV := MHA_BENCH_COST=50ms/10 MHA_BENCH_LIVE=5s MHA_BENCH_BATCH_TURNAROUND=5s
BENCH_RUN := 'Cost|LiveEvents|BatchMode|HangRecovery'
else
BENCH_RUN := .
endif

## bench: orchestration cost against a bare client, quota use, reserve Update rate, live-event delay, idle-run cost, scale to 1 000 runs, batch mode; one summary table, also in bench/results.json (QUICK=1: a short version)
bench: $(TEMPORAL)
	$(BENCH_ENV) TEMPORAL_CLI=$(TEMPORAL) $(GO) test -run '^$$' -bench $(BENCH_RUN) -benchtime 1x -timeout 60m ./e2e

# SOAK: how long `make soak` runs (chaos for four fifths of it, then the drain).
SOAK        ?= 10m

## soak: 30 runs against the fake provider under random faults, worker SIGKILLs, a dev server restart and random controls for $(SOAK) (make soak SOAK=3m); fails when the ledger of provider calls does not add up
soak: $(TEMPORAL)
	MHA_SOAK=$(SOAK) TEMPORAL_CLI=$(TEMPORAL) $(GO) test -run '^TestSoak$$' -count=1 -v -timeout 3h ./e2e

## temporal: the temporal CLI (dev server + Web UI), v1.5.1 built from the module proxy, reused when present
temporal: $(TEMPORAL)
$(TEMPORAL): tools/temporal/go.mod
	cd tools/temporal && GOFLAGS=-mod=mod $(GO) build -o $(TEMPORAL) github.com/temporalio/cli/cmd/temporal
	@touch $(TEMPORAL)

$(STATICCHECK):
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

tools: $(TEMPORAL) $(STATICCHECK)
