#!/usr/bin/env bash
# `make bench`: runs the benchmarks and writes docs/benchmarks.md and its
# plots (docs/benchmarks/*.svg). Needs root (eBPF, namespaces) and two CPUs
# (the throughput bench pins the program's core apart from the generator's).
# Every lab bench removes its namespaces and stops its processes on exit,
# and on SIGINT, SIGTERM or SIGHUP.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/benchmarks.md
plots=docs/benchmarks
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
export BENCH_DATA=$data

step() { printf '[bench] %s\n' "$*" >&2; }
bench() { # PACKAGE NAME [CARGO ARGS]: runs one bench target, its Markdown into $data/NAME.md
  local package=$1 name=$2
  shift 2
  step "$name"
  local t0=$SECONDS
  cargo bench -q -p "$package" "$@" --bench "$name" >"$data/$name.md"
  step "$name: $((SECONDS - t0)) s"
}

# The lab benches start the workspace's binaries as users run them (the
# release builds, next to the bench executables).
step "building (release)"
cargo build -q --release --workspace --bins
# `--features bench`: the objects with the reference programs (`bench_floor`
# and the others), which the objects users run do not carry.
bench proto table
bench director-xdp director --features bench
bench director-xdp scale --features bench
bench lab-tests redirect --features bench
bench lab-tests throughput --features bench
bench lab-tests e2e

machine="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
date=$(date -u +%Y-%m-%d)
step "plots"
mkdir -p "$plots"
BENCH_MACHINE=$machine BENCH_DATE=$date cargo run -q --release -p lab-tests --bin bench-plots -- "$data" "$plots"

plot() { # FILE ALT: a plot's link, if the plot was written
  [[ -f $plots/$1 ]] && printf '\n![%s](benchmarks/%s)\n' "$2" "$1"
  return 0
}
{
  echo "# Benchmarks"
  echo
  echo "Written by \`make bench\`; rerun it to refresh. Targets come from the issues;"
  echo "timed tests are never used for them. On this shared 2-core VM, absolute"
  echo "figures move by 20-50% from run to run (compare the floor columns); each table"
  echo "measures its programs in interleaved batches, so compare within a table: only"
  echo "ratios measured in one run are compared. Each section says its method and"
  echo "whether the program ran attached to an interface (reached through the XDP"
  echo "dispatcher, as in production) or detached (\`BPF_PROG_TEST_RUN\`): the same"
  echo "program costs a few ns less attached. The reference programs (\`bench_floor\`,"
  echo "\`bench_min_encap\`, \`bench_siphash\`) are built into the objects for"
  echo "\`make bench\` only (the \`bench\` feature); the objects users run do not carry them."
  echo
  echo "Machine: $machine, kernel $(uname -r), $(rustc --version | cut -d' ' -f1-2), $date."
  echo "Every plot's title names its method, the machine and the date."
  echo
  cat "$data/table.md"
  plot table.svg "Table build and update times against the number of backends"
  plot moved.svg "Rows moved per change against the ideal 1/N"
  echo
  echo "Targets (issue [1]): a full build of 65,536 rows x 256 backends under 100 ms;"
  echo "an update after one state or health change, or one added backend, under 5 ms."
  echo
  cat "$data/director.md"
  plot cost.svg "Cost per packet by case, with the floor"
  echo
  cat "$data/scale.md"
  plot scale.svg "Director cost above the floor by VIPs and tables"
  echo
  echo "Targets (issue [10]): the cost flat within noise from 1 to 10,000 VIPs and 1"
  echo "to 256 tables. The maps hold 256 binds and 16 tables, so one bind per VIP"
  echo "stops at 256 VIPs, and 256 tables are not measured: they need a map layout"
  echo "with larger limits (\`proto::maps\`; at 1 MiB of rows per table, 256 MiB)."
  echo "More than 10,000 VIPs are measured as one CIDR bind (the last row; an IPv6"
  echo "packet, so compare it with the IPv6 rows of the director table). Compare the"
  echo "rows with their load ranges: differences inside them are this host's noise."
  echo
  cat "$data/redirect.md"
  echo
  cat "$data/throughput.md"
  plot throughput.svg "Packets per second through the attached director and the floor"
  echo
  cat "$data/e2e.md"
  plot e2e.svg "HTTP latency through the VIP and straight to the backend"
} >"$data/out.md"
mv "$data/out.md" "$out"
cat "$out"
