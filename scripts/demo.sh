#!/usr/bin/env bash
# `make demo`: first the real thing, a fleet in network namespaces (client,
# router with BIRD and ECMP, three directors each with BIRD and the daemon,
# four backends with an HTTP server, the health checker) where 300 held
# connections and an HTTP load go through the VIPs while backends are
# drained, added and fail, a director loses its link and another is
# drained and stopped; then the offline tools an operator uses before a
# change (build, inspect, preview, trace, replay).
# Needs root; leaves nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p director-ctl -p director-xdp -p healthcheck -p lab-tests
target/release/lab-demo
ctl=target/release/director-ctl
director=target/release/director-xdp
config=examples/director.json
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "${*:2}"; "${@:2}"; }

step "Build the forwarding tables (65,536 rows each: a primary and its alternates)" \
  "$ctl" table build "$config" --out "$work/table.json"
echo "first rows of table \"web\":"
grep -m 4 '^        \["' "$work/table.json"

step "Rows per backend: draining, unhealthy and inactive backends hold no row as primary; draining and unhealthy ones stay alternates" \
  "$ctl" table show "$config"

# Two operator steps, previewed before they are applied: 198.51.100.13 has
# finished draining and is taken out; then 198.51.100.12 is drained.
sed 's/"198.51.100.13", "state": "draining"/"198.51.100.13", "state": "inactive"/' \
  "$config" > "$work/step1.json"
sed 's/"198.51.100.12", "state": "active"/"198.51.100.12", "state": "draining"/' \
  "$work/step1.json" > "$work/step2.json"
step "Preview taking out 198.51.100.13 (drained): only rows where it was an alternate change, released on purpose" \
  "$ctl" table diff "$config" "$work/step1.json"
step "Preview draining 198.51.100.12: exactly its rows get a new primary, it stays in their chains, and the report names what would be lost" \
  "$ctl" table diff "$work/step1.json" "$work/step2.json"

step "Where does a client's connection go?" \
  "$ctl" trace "$work/step1.json" --src 192.0.2.7:40000 --dst 203.0.113.10:443/tcp
step "The same client after the drain: new primary, and the old one an alternate (second chance keeps the connection)" \
  "$ctl" trace "$work/step2.json" --src 192.0.2.7:40000 --dst 203.0.113.10:443/tcp
python3 scripts/sample_pcap.py "$work/in.pcap"
step "The real XDP director (in the kernel, through BPF_PROG_TEST_RUN) on a capture: 6 to backends, 1 not for a VIP, 1 malformed; the packet-too-big follows its flow" \
  "$director" replay --config "$config" --in "$work/in.pcap" --out "$work/out.pcap"
step "What came out, as tcpdump sees it" tcpdump -nr "$work/out.pcap"
echo
echo "demo done: nothing was left behind ($work removed)."
