# wanflow — build, test, demo, lint, bench.
#
# make test runs every test; tests that need root (network namespaces, TUN,
# netlink, nftables) run when root and skip with a reason otherwise.

GO        ?= go
BIN       ?= bin/wanflow
PKGS      := ./...
TESTFLAGS ?= -count=1 -timeout 14m
STATICCHECK_VERSION := v0.8.2
# Fuzz targets run briefly by `make test`, longer by `make fuzz`.
FUZZTIME  ?= 10s

.PHONY: all build test unit fuzz-short fuzz lint vet demo lab-up lab-down bench clean deps release

all: build

build:
	$(GO) build -trimpath -o $(BIN) ./cmd/wanflow

# deps installs what the tests use from Debian when run as root on a Debian
# machine (ping for the lab tests, iperf3 for the benchmarks, busybox's udhcpc
# and dig for the LAN-services tests, dnsperf for the DNS benchmark, scapy
# for the hostile-packet tests). Harmless
# elsewhere.
deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		missing=""; \
		command -v ping   >/dev/null || missing="$$missing iputils-ping"; \
		command -v iperf3 >/dev/null || missing="$$missing iperf3"; \
		command -v ip     >/dev/null || missing="$$missing iproute2"; \
		command -v busybox >/dev/null || missing="$$missing busybox"; \
		command -v dig    >/dev/null || missing="$$missing dnsutils"; \
		command -v dnsperf >/dev/null || missing="$$missing dnsperf"; \
		/usr/bin/python3 -c 'import scapy' 2>/dev/null || missing="$$missing python3-scapy"; \
		if [ -n "$$missing" ]; then \
			(apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		fi; \
	fi

vet:
	$(GO) vet $(PKGS)

test: deps vet
	$(GO) test $(TESTFLAGS) $(PKGS)
	$(MAKE) fuzz-short

# fuzz-short runs every fuzz target for FUZZTIME (see .ci/fuzz).
fuzz-short:
	GO=$(GO) FUZZTIME=$(FUZZTIME) bash .ci/fuzz

fuzz:
	$(MAKE) fuzz-short FUZZTIME=2m

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)

demo: build
	./$(BIN) demo

lab-up: build
	./$(BIN) lab up

lab-down: build
	./$(BIN) lab down

bench: build
	./$(BIN) bench --out docs/bench --doc docs/benchmarks.md

clean:
	rm -rf bin

# release cross-compiles static binaries (no cgo) for the Raspberry Pi
# (32-bit ARMv7 and 64-bit) and amd64 into dist/, stamped with VERSION
# (default: git describe), and writes dist/SHA256SUMS.
release: VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
release:
	rm -rf dist
	mkdir -p dist
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags '-s -w -X main.version=$(VERSION)' -o dist/wanflow-linux-armv7 ./cmd/wanflow
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '-s -w -X main.version=$(VERSION)' -o dist/wanflow-linux-arm64 ./cmd/wanflow
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '-s -w -X main.version=$(VERSION)' -o dist/wanflow-linux-amd64 ./cmd/wanflow
	cd dist && sha256sum wanflow-linux-armv7 wanflow-linux-arm64 wanflow-linux-amd64 > SHA256SUMS
