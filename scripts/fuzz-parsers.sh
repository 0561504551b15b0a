#!/usr/bin/env bash
# `make fuzz`, second part: the cargo-fuzz targets of director-xdp/fuzz (the
# config parser, the GUE parser, the API request bodies, the pcap/pcapng
# reader), FUZZ_SECONDS (default 60) each, from the checked-in corpus, with
# the pinned nightly (cargo fuzz needs one); installs cargo-fuzz if missing.
# The figures go into the "Parsers (make fuzz)" section of
# docs/reliability.md. A crash leaves its input in
# director-xdp/fuzz/artifacts/TARGET/ and fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
doc=docs/reliability.md
seconds=${FUZZ_SECONDS:-60}
nightly=$(sed -n 's/^NIGHTLY=//p' scripts/deps.sh)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cd director-xdp/fuzz
cargo "+$nightly" fuzz build -O
status=0
lines=()
for target in config gue api_body capture; do
  # A scratch copy: what a run adds to the corpus stays out of the tree.
  mkdir -p "$work/$target"
  cp corpus/"$target"/* "$work/$target/"
  log="$work/$target.log"
  if cargo "+$nightly" fuzz run -O "$target" "$work/$target" -- \
      -max_total_time="$seconds" -print_final_stats=1 > "$log" 2>&1; then
    result="no failure"
  else
    result="**FAILED** (input in director-xdp/fuzz/artifacts/$target/)"
    status=1
  fi
  runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  echo "make fuzz: $target: ${runs:-?} inputs in $seconds s, coverage ${cov:-?}: $result"
  lines+=("- \`$target\`: ${runs:-?} inputs in $seconds s (coverage counter ${cov:-?}): $result")
done
cd ../..
{
  echo "<!-- make fuzz parsers: begin (written by scripts/fuzz-parsers.sh) -->"
  echo "Last run: $(date -u +%Y-%m-%d), $(nproc) cores, $nightly, $seconds s per target."
  echo
  printf '%s\n' "${lines[@]}"
  echo "<!-- make fuzz parsers: end -->"
} > "$work/block"
awk -v block="$work/block" '
  /<!-- make fuzz parsers: begin/ { while ((getline line < block) > 0) print line; skip = 1; next }
  /<!-- make fuzz parsers: end -->/ { skip = 0; next }
  !skip { print }
' "$doc" > "$work/doc"
cp "$work/doc" "$doc"
exit $status
