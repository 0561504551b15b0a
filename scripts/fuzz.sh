#!/usr/bin/env bash
# `make fuzz`: the data-plane fuzzer (director-xdp/tests/fuzz_dataplane.rs)
# in a release build, FUZZ_PACKETS (default 5,000,000) packets per program,
# a random seed unless FUZZ_SEED is given; the figures go into the
# "Packets (make fuzz)" section of docs/reliability.md, failures included.
set -euo pipefail
cd "$(dirname "$0")/.."
doc=docs/reliability.md
packets=${FUZZ_PACKETS:-5000000}
seed=${FUZZ_SEED:-0x$(od -An -N8 -tx8 /dev/urandom | tr -d ' \n')}
report=$(mktemp -d)
trap 'rm -rf "$report"' EXIT

echo "make fuzz: seed $seed, $packets packets per program (rerun with FUZZ_SEED=$seed)"
cargo test --release -p director-xdp --test fuzz_dataplane --no-run
status=0
start=$(date +%s)
FUZZ_SEED=$seed FUZZ_PACKETS=$packets FUZZ_REPORT=$report \
  cargo test --release -p director-xdp --test fuzz_dataplane -- --nocapture || status=$?
wall=$(( $(date +%s) - start ))

if [[ ! -f $report/director.md || ! -f $report/redirect.md ]]; then
  echo "make fuzz: a program stopped before its summary; $doc left as it was" >&2
  exit 1
fi
{
  echo "<!-- make fuzz: begin (written by scripts/fuzz.sh) -->"
  echo "Last run: $(date -u +%Y-%m-%d), kernel $(uname -r), $(nproc) cores"
  echo "($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')),"
  echo "release build, both programs at once, $wall s in all."
  echo
  cat "$report/director.md"
  echo
  cat "$report/redirect.md"
  echo "<!-- make fuzz: end -->"
} > "$report/block"
# Replace the block between the markers, leaving the rest of the page alone.
awk -v block="$report/block" '
  /<!-- make fuzz: begin/ { while ((getline line < block) > 0) print line; skip = 1; next }
  /<!-- make fuzz: end -->/ { skip = 0; next }
  !skip { print }
' "$doc" > "$report/doc"
cp "$report/doc" "$doc"
echo "make fuzz: figures written to $doc"
exit $status
