#!/usr/bin/env bash
# The benchmark command (make bench): starts a single-node Apache Kafka
# unless KAFKA_BROKERS names one, builds the service and the benchmark
# driver, runs every scenario, prints the results table and keeps it in
# bench-results/. Extra arguments go to produktly-bench (e.g. -records 200000).
set -euo pipefail
cd "$(dirname "$0")/.."
started=""
cleanup() { if [ -n "$started" ]; then scripts/kafka.sh down single || true; fi; }
trap cleanup EXIT
if [ -z "${KAFKA_BROKERS:-}" ]; then
  out=$(scripts/kafka.sh up single)
  started=1
  export KAFKA_BROKERS=${out##*KAFKA_BROKERS=}
fi
make build >/dev/null
CGO_ENABLED=0 go build -trimpath -o bin/produktly-bench ./cmd/produktly-bench
mkdir -p bench-results
stamp=$(date -u +%Y%m%dT%H%M%SZ)
./bin/produktly-bench -binary bin/produktly-segment -log-dir bench-results "$@" | tee "bench-results/$stamp.md"
