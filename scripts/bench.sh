#!/usr/bin/env bash
# `make bench`: runs the benchmarks and writes docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/benchmarks.md
tmp=$(mktemp)
trap 'rm -f "$tmp" "$tmp.table" "$tmp.director" "$tmp.redirect"' EXIT
cargo bench -q -p proto --bench table > "$tmp.table"
cargo bench -q -p director-xdp --bench director > "$tmp.director"
cargo bench -q -p lab-tests --bench redirect > "$tmp.redirect"
{
  echo "# Benchmarks"
  echo
  echo "Written by \`make bench\`; rerun it to refresh. Targets come from the issues;"
  echo "timed tests are never used for them. On this shared 2-core VM, absolute"
  echo "figures move by 20-50% from run to run (compare the floor columns); each table"
  echo "measures its programs in interleaved batches, so compare within a table."
  echo
  echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores,"
  echo "kernel $(uname -r), $(rustc --version | cut -d' ' -f1-2), $(date -u +%Y-%m-%d)."
  echo
  cat "$tmp.table"
  echo
  echo "Targets (issue [1]): a full build of 65,536 rows x 256 backends under 100 ms;"
  echo "an update after one state or health change, or one added backend, under 5 ms."
  echo
  cat "$tmp.director"
  echo
  cat "$tmp.redirect"
} > "$tmp"
rm -f "$tmp.table" "$tmp.director" "$tmp.redirect"
mv "$tmp" "$out"
cat "$out"
