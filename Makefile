# Tollgate. `make demo` runs the sandboxed demo, `make test` runs every test;
# both install what they need first (make deps). Root-only tests run when
# invoked as root and skip otherwise (in CI, CI=true, they must run).

GO        ?= go
BIN       := bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
FUZZTIME  ?= 10s
# Debian packages the tests and the demo need; installed only when missing.
DEB_DEPS  := iptables iproute2 iputils-ping util-linux procps dbus dbus-daemon \
             rpm lintian systemd \
             libgl1-mesa-dev xorg-dev libxkbcommon-dev libwayland-dev \
             xvfb xdotool imagemagick desktop-file-utils
# Repository-local tools (go install), pinned.
TOOLS     := $(CURDIR)/bin/tools
NFPM_VERSION := v2.45.2
NFPM      := $(TOOLS)/nfpm
# Packages: version from git describe, made valid for Debian and RPM.
PKG_VERSION := $(shell sh packaging/version.sh 2>/dev/null)
PKG_ARCH  ?= $(shell $(GO) env GOARCH)
DIST      := dist
# Where the packages go (the staging directory is always dist/stage).
PKG_OUT   ?= $(DIST)

# The daemon and the CLI are built without cgo (internal/deptest keeps them
# so); tollgate-tray needs it (Fyne's OpenGL driver), and so do the tests of
# ui/tray, so cgo is chosen per build, not exported.
NOCGO     := CGO_ENABLED=0

.PHONY: all deps build tray test test-unit fuzz bench bench-go demo vet clean tools deb rpm packages stage lint-packages

all: build

deps:
	@missing=""; for p in $(DEB_DEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" -ne 0 ]; then echo "missing Debian packages:$$missing (run: sudo make deps)"; exit 1; fi; \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	$(GO) mod download
	@$(MAKE) --no-print-directory tools

# nfpm (packages), installed once into bin/tools at the pinned version.
tools: $(NFPM)
$(NFPM):
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) $(NOCGO) $(GO) install github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION)

build: deps
	@mkdir -p $(BIN)
	$(NOCGO) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./daemon/cmd/tollgated ./internal/cmd/tgprobe ./internal/cmd/tgdemo

# The tray app (cgo, Fyne): about 3 minutes on 2 CPUs with a cold cache.
tray: deps
	@mkdir -p $(BIN)
	CGO_ENABLED=1 $(GO) build -trimpath -buildmode=pie -ldflags '$(LDFLAGS)' -o $(BIN)/ ./ui/cmd/tollgate-tray

vet:
	$(GO) vet ./...
	@out=$$(gofmt -l daemon ui shared dbus internal packaging); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Everything: unit, fuzz seed corpora, integration (root, in namespaces) and
# end-to-end tests.
test: deps vet
	$(GO) test -count=1 -timeout 20m ./...

test-unit:
	$(GO) test -count=1 -short ./...

# Run every fuzz target for FUZZTIME each (the seed corpora in each
# package's testdata/fuzz run first). Targets are found in the sources, so a
# package that does not build fails here instead of being skipped. A bare
# "context deadline exceeded" with no failing input written is Go's own race
# at the end of -fuzztime (go.dev/issue/75804, fixed in Go 1.27): that target
# runs once more; anything else fails at once.
fuzz: deps
	@set -e; n=0; out=$$(mktemp); trap 'rm -f $$out' EXIT; \
	for d in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for f in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$d/*_test.go); do \
			echo "fuzz $$d $$f ($(FUZZTIME))"; n=$$((n+1)); \
			for try in 1 2; do \
				if $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$d >$$out 2>&1; then cat $$out; break; fi; \
				cat $$out; \
				if [ $$try = 1 ] && grep -q '^    context deadline exceeded$$' $$out && ! grep -q 'Failing input written' $$out; then \
					echo "fuzz: $$f stopped by Go's -fuzztime race (go.dev/issue/75804), no input failed: once more"; continue; fi; \
				exit 1; \
			done; \
		done; done; echo "fuzz: $$n targets, $(FUZZTIME) each, no failure"

# Benchmarks: the Go benchmarks (bench-go), then tgbench's end-to-end figures
# (root, in namespaces it creates and removes): a table on stdout and
# bench/results.json. BENCH_QUICK=1: a fast smoke run of both.
bench: build bench-go
	$(NOCGO) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./internal/cmd/tgbench ./internal/cmd/tgload ./internal/cmd/tgbare
	$(BIN)/tgbench -bin $(BIN) $(if $(filter 1,$(BENCH_QUICK)),-quick) -out bench/results.json

bench-go: deps
	$(GO) test -run '^$$' -bench . -benchmem $(if $(filter 1,$(BENCH_QUICK)),-benchtime 1x) ./...

demo: build
	$(BIN)/tgdemo -bin $(BIN)

# Packages into dist/, as .deb and .rpm: `tollgate` (daemon, CLI, unit,
# policies, config, rules.d; no GUI libraries) and `tollgate-tray` (the Fyne
# app, icons, .desktop and autostart files; depends on tollgate). The staged
# config.toml is the embedded defaults with every key commented out.
stage:
	@mkdir -p $(DIST)/stage $(PKG_OUT)
	$(NOCGO) $(GO) build -trimpath -ldflags '-s -w -X main.version=$(PKG_VERSION)' -o $(DIST)/stage/ ./daemon/cmd/tollgated ./ui/cmd/tollgate
	CGO_ENABLED=1 $(GO) build -trimpath -buildmode=pie -ldflags '-s -w -X main.version=$(PKG_VERSION)' -o $(DIST)/stage/ ./ui/cmd/tollgate-tray
	$(DIST)/stage/tollgated --print-default-config | sed -E 's/^([a-z_]+[[:space:]]*=)/# \1/' > $(DIST)/stage/config.toml
	@for p in tollgate tollgate-tray; do \
	  { echo "$$p ($(PKG_VERSION)-1) unstable; urgency=medium"; echo; \
	    echo "  * Built from git commit $$(git rev-parse --short HEAD 2>/dev/null || echo unknown)."; echo; \
	    echo " -- Tollgate developers <tollgate@users.noreply.github.com>  $$(date -R -d @$$(git log -1 --format=%ct 2>/dev/null || date +%s))"; \
	  } | gzip -n9 > $(DIST)/stage/changelog$${p#tollgate}.Debian.gz; \
	done

deb: $(NFPM) stage
	for c in nfpm nfpm-tray; do \
	  VERSION=$(PKG_VERSION) ARCH=$(PKG_ARCH) $(NFPM) package --config packaging/$$c.yaml --packager deb --target $(PKG_OUT)/ || exit 1; done

rpm: $(NFPM) stage
	for c in nfpm nfpm-tray; do \
	  VERSION=$(PKG_VERSION) ARCH=$(PKG_ARCH) $(NFPM) package --config packaging/$$c.yaml --packager rpm --target $(PKG_OUT)/ || exit 1; done

packages: deb rpm

# lintian on the .deb (also run by the packaging tests).
lint-packages: deb
	lintian --fail-on error $(PKG_OUT)/tollgate_$(PKG_VERSION)-1_*.deb $(PKG_OUT)/tollgate-tray_$(PKG_VERSION)-1_*.deb

clean:
	rm -rf $(BIN) dist

# Soak: TestIntegrationSoak (daemon/e2e) for SOAK_DURATION (default 2m):
# allowed, denied and pending connections through tollgated in namespaces,
# then a table of decisions, pending groups, queue, RSS and threads at start
# and end. `make test` runs the same test for 10s.
SOAK_DURATION ?= 2m
.PHONY: soak
soak: deps
	SOAK_DURATION=$(SOAK_DURATION) $(GO) test -count=1 -timeout 60m -run '^TestIntegrationSoak$$' -v ./daemon/e2e/
