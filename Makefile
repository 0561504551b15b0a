# The two commands of the README: `make demo` and `make test`. Each installs
# what it needs first (`make deps`, idempotent), so both work on a fresh
# Debian machine.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:/usr/lib/llvm-22/bin:$(PATH)
CARGO ?= cargo

.PHONY: all deps build test lint fmt demo bench fuzz clean

all: build

deps:
	@bash scripts/deps.sh

build: deps
	$(CARGO) build --workspace --release

# The eBPF crate is outside the workspace (other target, nightly without
# clippy): it is linted for the host with the pinned stable toolchain, in its
# own target dir (one inside director-xdp/ebpf would retrigger its build).
lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path director-xdp/ebpf/Cargo.toml -- --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings
	$(CARGO) clippy --manifest-path director-xdp/ebpf/Cargo.toml --target-dir target/ebpf-lint --all-features -- -D warnings

# Unit, property, vector and CLI tests, and the data-plane tests that run the
# eBPF programs in the kernel (root), on the objects as users run them; then
# the benchmark's reference programs, which only the `bench` feature builds
# into the objects.
test: deps lint
	$(CARGO) test --workspace
	$(CARGO) test -p director-xdp --features bench --test test_run --test object

demo: deps
	@bash scripts/demo.sh

# Figures land in docs/benchmarks.md.
bench: deps
	@bash scripts/bench.sh

# The data-plane fuzzer, long: a release build, 5,000,000 packets per
# program (FUZZ_PACKETS), a random seed (FUZZ_SEED to replay one); then the
# parsers' cargo-fuzz targets, FUZZ_SECONDS (60) each. Figures land in
# docs/reliability.md. `make test` runs both short (50,000 packets with a
# fixed seed; the parsers' corpus with fixed mutations).
fuzz: deps
	@bash scripts/fuzz.sh
	@bash scripts/fuzz-parsers.sh

fmt:
	$(CARGO) fmt --all
	$(CARGO) fmt --manifest-path director-xdp/ebpf/Cargo.toml

clean:
	$(CARGO) clean
