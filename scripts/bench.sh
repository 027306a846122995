#!/usr/bin/env bash
# The benchmark command (make bench): starts a single-node Apache Kafka
# unless KAFKA_BROKERS names one, builds the service and the benchmark
# driver, runs every scenario, prints the results table and keeps it in
# bench-results/. Extra arguments go to produktly-bench (e.g. -records 200000).
#
# The baseline contender is the service built from BENCH_BASELINE (default
# 703118b, the commit before the accounts work), from a temporary git
# worktree of that commit; the binary lives in a temporary directory and is
# removed at the end. BENCH_BASELINE= (empty) skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
baseline_rev=${BENCH_BASELINE-703118b}
started=""
tmp=$(mktemp -d)
cleanup() {
  if [ -d "$tmp/src" ]; then git worktree remove --force "$tmp/src" || true; fi
  rm -rf "$tmp"
  if [ -n "$started" ]; then scripts/kafka.sh down single || true; fi
}
trap cleanup EXIT
if [ -z "${KAFKA_BROKERS:-}" ]; then
  out=$(scripts/kafka.sh up single)
  started=1
  export KAFKA_BROKERS=${out##*KAFKA_BROKERS=}
fi
make build >/dev/null
CGO_ENABLED=0 go build -trimpath -o bin/produktly-bench ./cmd/produktly-bench
baseline=()
if [ -n "$baseline_rev" ]; then
  git worktree add --detach "$tmp/src" "$baseline_rev" >/dev/null 2>&1
  (cd "$tmp/src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$baseline_rev" \
    -o "$tmp/produktly-segment-$baseline_rev" ./cmd/produktly-segment)
  baseline=(-baseline "$tmp/produktly-segment-$baseline_rev" -baseline-rev "$baseline_rev")
fi
mkdir -p bench-results
stamp=$(date -u +%Y%m%dT%H%M%SZ)
./bin/produktly-bench -binary bin/produktly-segment -log-dir bench-results \
  -profile "bench-results/$stamp.cpu.pprof" "${baseline[@]}" "$@" | tee "bench-results/$stamp.md"
