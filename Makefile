# Tollgate. `make demo` runs the sandboxed demo, `make test` runs every test;
# both install what they need first (make deps). Root-only tests run when
# invoked as root and skip otherwise (in CI, CI=true, they must run).

GO        ?= go
BIN       := bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
FUZZTIME  ?= 10s
# Debian packages the tests and the demo need; installed only when missing.
DEB_DEPS  := iptables iproute2 iputils-ping util-linux procps dbus dbus-daemon

export CGO_ENABLED ?= 0

.PHONY: all deps build test test-unit fuzz bench bench-go demo vet clean

all: build

deps:
	@missing=""; for p in $(DEB_DEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" -ne 0 ]; then echo "missing Debian packages:$$missing (run: sudo make deps)"; exit 1; fi; \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	$(GO) mod download

build: deps
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./daemon/cmd/tollgated ./internal/cmd/tgprobe ./internal/cmd/tgdemo

vet:
	$(GO) vet ./...
	@out=$$(gofmt -l daemon ui shared dbus internal); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Everything: unit, fuzz seed corpora, integration (root, in namespaces) and
# end-to-end tests.
test: deps vet
	$(GO) test -count=1 -timeout 20m ./...

test-unit:
	$(GO) test -count=1 -short ./...

# Run every fuzz target for FUZZTIME each (the seed corpora in each
# package's testdata/fuzz run first). Targets are found in the sources, so a
# package that does not build fails here instead of being skipped.
fuzz: deps
	@set -e; n=0; for d in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for f in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$d/*_test.go); do \
			echo "fuzz $$d $$f ($(FUZZTIME))"; n=$$((n+1)); \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$d; \
		done; done; echo "fuzz: $$n targets, $(FUZZTIME) each, no failure"

# Benchmarks: the Go benchmarks (bench-go), then tgbench's end-to-end figures
# (root, in namespaces it creates and removes): a table on stdout and
# bench/results.json. BENCH_QUICK=1: a fast smoke run of both.
bench: build bench-go
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./internal/cmd/tgbench ./internal/cmd/tgload ./internal/cmd/tgbare
	$(BIN)/tgbench -bin $(BIN) $(if $(filter 1,$(BENCH_QUICK)),-quick) -out bench/results.json

bench-go: deps
	$(GO) test -run '^$$' -bench . -benchmem $(if $(filter 1,$(BENCH_QUICK)),-benchtime 1x) ./...

demo: build
	$(BIN)/tgdemo -bin $(BIN)

clean:
	rm -rf $(BIN) dist
