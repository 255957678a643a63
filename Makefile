# wasmflow — two commands set everything up on a fresh machine:
#   make run    builds everything, starts a local Kafka-compatible broker, runs the demo job
#   make test   builds everything and runs every test, including end-to-end tests on a real broker
SHELL := /bin/bash
.DEFAULT_GOAL := help

TOOLS    ?= $(or $(WASMFLOW_TOOLS),$(CURDIR)/.tools)
CARGO    ?= cargo
# Where cargo builds (honours CARGO_TARGET_DIR, like the tests do).
TARGET   := $(or $(CARGO_TARGET_DIR),target)
WASMFLOW := $(TARGET)/release/wasmflow
OPERATORS := $(patsubst %/Cargo.toml,%,$(wildcard operators/*/Cargo.toml))
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export WASMFLOW_TOOLS := $(TOOLS)

.PHONY: help host guest-toolchain operators tools browser test lint audit run example bench man clean

help:
	@echo "make run      build, start a local broker, run the demo job (Kafka -> counter -> exactly-once files)"
	@echo "make test     build and run every test (unit, harness, end-to-end with a real broker)"
	@echo "make lint     cargo fmt --check, cargo clippy (warnings are errors), cargo deny (licenses, bans, sources)"
	@echo "make audit    cargo deny check advisories (needs the RustSec database from GitHub)"
	@echo "make example  build and run jobs/example.toml (no broker needed)"
	@echo "make bench    benchmarks, report in bench/REPORT.md"
	@echo "make man      man pages of the command line in $(TARGET)/man (docs/cli.md)"

host:
	$(CARGO) build --release -p wasmflow-host

# A rustup wasm32 target if installed; otherwise Debian's rustc-web, which builds std from source.
guest-toolchain:
	@if rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then \
		echo "guest toolchain: rustup wasm32-unknown-unknown"; \
	elif [ -x /usr/bin/rustc ] && [ -d /usr/lib/rustlib/src/rust/library ] && command -v wasm-ld >/dev/null; then \
		echo "guest toolchain: Debian rustc-web with -Zbuild-std"; \
	else \
		echo "installing Debian's guest toolchain: rustc-web cargo-web rust-web-src lld"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq rustc-web cargo-web rust-web-src lld; \
	fi

operators: host guest-toolchain
	@for op in $(OPERATORS); do $(WASMFLOW) build $$op || exit 1; done

# The servers tests and the demo run on loopback, tansu (Kafka) and moto_server (S3), and the
# Kubernetes schema validator the deployment test uses.
tools:
	@scripts/install-tansu.sh "$(TOOLS)"
	@scripts/install-moto.sh "$(TOOLS)"
	@scripts/install-kubernetes-validate.sh "$(TOOLS)"

# Headless Chromium for the dashboard's browser test (make test only; make run does not need it).
browser:
	@scripts/install-chromium.sh

test: operators tools browser
	$(CARGO) test --workspace --release

# A formatted tree, warnings are errors, dependencies within deny.toml (CI runs this before the tests).
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
	@scripts/install-cargo-deny.sh "$(TOOLS)"
	$(TOOLS)/bin/cargo-deny check licenses bans sources

# Security advisories (RustSec); needs network access to GitHub for the advisory database.
audit:
	@scripts/install-cargo-deny.sh "$(TOOLS)"
	$(TOOLS)/bin/cargo-deny check advisories

example: operators
	$(WASMFLOW) run jobs/example.toml

run: operators tools
	@WORKERS="$(WORKERS)" scripts/demo.sh

bench: operators
	$(CARGO) run --release -p wasmflow-bench

man: host
	$(WASMFLOW) man --dir $(TARGET)/man

clean:
	$(CARGO) clean
