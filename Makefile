# Tempel — run `make help` for the targets.
GO        ?= go
BIN       ?= bin
FUZZTIME  ?= 60s
BENCHTIME ?= 1s
DATA_DIR  ?= ./data
PUBLISH_EVERY ?= 24h

# staticcheck is pinned: a newer release may add checks that fail the build.
STATICCHECK_VERSION := 0.8.2
STATICCHECK := $(or $(shell $(GO) env GOBIN),$(shell $(GO) env GOPATH)/bin)/staticcheck

# Every fuzz target as package:Target.
FUZZ_TARGETS := \
	./ksi/tlv:FuzzRead \
	./ksi:FuzzParseSignature \
	./ksi:FuzzReadSignatureHead \
	./ksi:FuzzShiftInputLevel \
	./ksi:FuzzParsePublicationString \
	./ksi:FuzzParsePublicationsFile \
	./ksi/calendartree:FuzzAppendChain \
	./ksi/calendarstep:FuzzSecond \
	./ksi/pdu:FuzzParseAggregatorRequest \
	./ksi/pdu:FuzzParseAggregatorResponse \
	./ksi/pdu:FuzzParseExtenderRequest \
	./ksi/pdu:FuzzParseExtenderResponse \
	./calendar:FuzzDecodeSecondEntry \
	./calendar:FuzzDecodePublicationEntry \
	./calendar:FuzzDecodeSnapshotDesc \
	./internal/raftnode:FuzzSnapData \
	./internal/server:FuzzReadKSIFrame \
	./internal/ntpcheck:FuzzParseReply \
	./pdfts:FuzzFind \
	./tsp:FuzzParseRequest \
	./tsp:FuzzParseResponse \
	./tsp:FuzzParseToken

.PHONY: help build test lint fuzz bench run clean proto proto-check man dist wasm

help: ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

# The release version stamped into the binary (tempel version, the
# tempel_build_info metric); the VCS revision comes from the toolchain.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X github.com/tempel-ksi/tempel/internal/buildinfo.Version=$(VERSION)

# -buildvcs=auto: a GOFLAGS=-buildvcs=false in the environment would drop
# the revision from tempel --version.
build: ## build bin/tempel, stamped with VERSION (default: git describe)
	$(GO) build -buildvcs=auto -ldflags '$(LDFLAGS)' -o $(BIN)/tempel ./cmd/tempel

# The cluster tests run real member processes under continuous signing:
# they run after the others, not beside them, so that neither set's
# timings are those of a machine busy with the other.
CLUSTER_TESTS := ./internal/clustertest

test: lint ## lint, then every test with the race detector (the cluster of real processes last)
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v '/internal/clustertest$$')
	$(GO) test -race -count=1 $(CLUSTER_TESTS)

lint: ## gofmt check, go vet and staticcheck (installed, pinned, when missing)
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.\(gw\.\)\?go$$')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@$(STATICCHECK) -version 2>/dev/null | grep -qF '($(STATICCHECK_VERSION))' || \
		$(GO) install honnef.co/go/tools/cmd/staticcheck@v$(STATICCHECK_VERSION)
	$(STATICCHECK) ./...
	@# The browser verifier's WebAssembly main builds only for js/wasm.
	GOOS=js GOARCH=wasm $(GO) vet ./internal/webverify/wasm
	GOOS=js GOARCH=wasm $(STATICCHECK) ./internal/webverify/wasm

fuzz: ## run every fuzz target for FUZZTIME each (default 60s)
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== $$pkg $$name ($(FUZZTIME))"; \
		$(GO) test $$pkg -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME); \
	done

bench: ## run the Go benchmarks with allocations
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

man: build ## write the manual pages into $(BIN)/man (man -l bin/man/tempel.1)
	$(BIN)/tempel man $(BIN)/man

dist: ## cross-build release archives (linux/amd64, linux/arm64, darwin/arm64, windows/amd64) with SHA256SUMS into $(BIN)/dist
	VERSION=$(VERSION) GO=$(GO) scripts/dist.sh $(BIN)/dist

run: build ## start the service with its embedded defaults (PUBLISH_EVERY=5s for a quick tour)
	$(BIN)/tempel serve --data-dir $(DATA_DIR) --publish-every $(PUBLISH_EVERY)

clean: ## remove build output
	rm -rf $(BIN)

wasm: ## rebuild the browser verifier's committed WebAssembly and wasm_exec.js (internal/webverify/page/assets)
	GO=$(GO) scripts/genwasm.sh

proto: ## regenerate the Go, gRPC, gateway and OpenAPI code under proto/
	scripts/genproto.sh

proto-check: ## regenerate into a temp dir and fail if proto/ differs
	scripts/genproto.sh --check
