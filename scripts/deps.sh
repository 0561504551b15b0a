#!/usr/bin/env bash
# Installs everything the build, the tests, the demo and the benchmarks need,
# on a fresh Debian machine. Idempotent: each step checks before it installs,
# so a second run takes a few seconds.
set -euo pipefail

STABLE=1.99.0
NIGHTLY=nightly-2026-06-20
BPF_LINKER_VERSION=0.13.0
LLVM_MAJOR=22

log() { printf '[deps] %s\n' "$*"; }

# --- Debian packages ---------------------------------------------------------
APT_PACKAGES=(
  "llvm-${LLVM_MAJOR}-dev" "libpolly-${LLVM_MAJOR}-dev" # bpf-linker links LLVM
  zlib1g-dev libzstd-dev libxml2-dev pkg-config build-essential
  iproute2 iputils-ping ethtool tcpdump python3 curl # namespace labs, demo HTTP
  openssl # the health checker's HTTPS lab test makes its certificates
  bird2 # the fleet lab: BGP between the directors and the router
  chromium # the status page's test, in headless Chromium
  nginx-light wrk # make bench: the end-to-end HTTP benchmark's server and load
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # No service starts while installing: bird2 and nginx-light would start
  # a BIRD and an nginx in the root namespace, and the labs run their own,
  # one per namespace.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=1
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  ((own_policy)) && rm -f "$policy"
fi
# BIRD and nginx belong to the labs' namespaces only: the packages' own
# services stay off (on hosts that run systemd; without it nothing started
# them).
for service in bird nginx; do
  if [[ -d /run/systemd/system ]] && systemctl is-enabled --quiet "$service" 2>/dev/null; then
    log "disabling the system $service.service (the labs run their own, per namespace)"
    systemctl disable --now "$service" >/dev/null 2>&1 || true
  fi
done

# --- Rust toolchains ----------------------------------------------------------
if ! command -v rustup >/dev/null 2>&1; then
  echo "rustup is required (https://rustup.rs is not reachable from here: install it from your distribution)" >&2
  exit 1
fi
have_toolchain() { rustup toolchain list | grep -q "^$1-"; }
if ! have_toolchain "$STABLE"; then
  log "installing Rust $STABLE"
  rustup toolchain install "$STABLE" --profile minimal -c clippy -c rustfmt
fi
for c in clippy rustfmt; do
  rustup component list --toolchain "$STABLE" --installed | grep -q "^$c" ||
    rustup component add --toolchain "$STABLE" "$c"
done
if ! have_toolchain "$NIGHTLY" || ! rustup component list --toolchain "$NIGHTLY" --installed | grep -q '^rust-src'; then
  log "installing Rust $NIGHTLY with rust-src (eBPF crate)"
  rustup toolchain install "$NIGHTLY" --profile minimal -c rust-src
fi

# --- bpf-linker (its LLVM major must equal the nightly's) --------------------
export PATH="/usr/lib/llvm-${LLVM_MAJOR}/bin:$HOME/.cargo/bin:$PATH"
if ! bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"; then
  log "installing bpf-linker $BPF_LINKER_VERSION against LLVM $LLVM_MAJOR"
  cargo "+$STABLE" install bpf-linker --locked --version "$BPF_LINKER_VERSION" \
    --no-default-features --features "llvm-${LLVM_MAJOR}"
fi

log "ready: rust $STABLE, $NIGHTLY (+rust-src), bpf-linker $BPF_LINKER_VERSION, LLVM $LLVM_MAJOR"
