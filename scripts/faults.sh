#!/usr/bin/env bash
# The fault suite (docs/reliability.md): starts the 3-node Kafka cluster
# (containers when a Docker engine is healthy: the tests start them with
# testcontainers-go from KAFKA_IMAGE, KAFKA_CLUSTER_NODES=3; else the jar
# cluster of scripts/kafka.sh on ports 31092-33093), runs integration.TestFaults with FAULT_PROFILE=short|long against it, the
# real binary as separate processes and the segmenttest server, prints the
# ledger of every scenario, and stops the cluster even when a test fails.
# The long profile then runs the mapping fuzz target for FUZZTIME (8000000x,
# about 10 minutes here; a count rather than a duration, see scripts/test.sh).
#
# usage: scripts/faults.sh short|long [extra go test flags, e.g. -run TestFaults/isolated/crash]
#
# environment:
#   FAULT_SEED         repeat a run's random choices (each scenario logs its seed)
#   FAULT_LEDGER_OUT   where the ledger table goes (default: a temporary file, printed at the end)
#   FUZZTIME           the long profile's fuzzing budget (default 8000000x)
#   KAFKA_TEST_MODE    containers or jars (default: containers when Docker works)
#   KAFKA_IMAGE        the broker image in containers mode (default: scripts/images.sh kafka)
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=${1:-}
case "$PROFILE" in
  short) TIMEOUT=15m ;;
  long) TIMEOUT=120m ;;
  *) echo "usage: $0 short|long [go test flags]" >&2; exit 2 ;;
esac
shift

started=""
ledger=${FAULT_LEDGER_OUT:-$(mktemp -t produktly-faults-ledger.XXXXXX)}
cleanup() {
  if [ -n "$started" ]; then scripts/kafka.sh down cluster || true; fi
}
trap cleanup EXIT

docker_client() {
  if [ -n "${DOCKER:-}" ]; then echo "$DOCKER"; return; fi
  { dpkg -L docker.io 2>/dev/null | awk '/\/bin\/docker$/ && !f { print; f = 1 }'; } | grep . || command -v docker || true
}
mode=${KAFKA_TEST_MODE:-}
if [ "$mode" != jars ]; then
  c=$(docker_client)
  if [ -n "$c" ] && timeout 20 "$c" info >/dev/null 2>&1; then mode=containers; else mode=jars; fi
fi

if [ "$mode" = containers ]; then
  # The tests start the cluster; a KAFKA_BROKERS from the caller would
  # make them use that instead.
  unset KAFKA_BROKERS KAFKA_SCRAM_BROKERS
  export TESTCONTAINERS_RYUK_DISABLED=true KAFKA_CLUSTER_NODES=3
  if [ -z "${KAFKA_IMAGE:-}" ]; then
    KAFKA_IMAGE=$(scripts/images.sh kafka | sed -n 's/^KAFKA_IMAGE=//p')
  fi
  export KAFKA_IMAGE
  echo "faults.sh: profile $PROFILE against a 3-node cluster of $KAFKA_IMAGE containers; ledger in $ledger"
else
  out=$(scripts/kafka.sh up cluster)
  started=1
  KAFKA_BROKERS=$(sed -n 's/^KAFKA_BROKERS=//p' <<< "$out")
  export KAFKA_BROKERS
  export KAFKA_BROKER_DESC="Apache Kafka ${KAFKA_VERSION:-4.1.2} (scripts/kafka.sh, 3-node cluster, RF 3, min.insync.replicas 2)"
  echo "faults.sh: profile $PROFILE against $KAFKA_BROKERS; ledger in $ledger"
fi
export FAULT_PROFILE=$PROFILE FAULT_LEDGER_OUT=$ledger

start=$(date +%s)
status=0
# -parallel: the scenarios mostly wait on processes and timers; without it
# go test runs only GOMAXPROCS of them at once.
go test -count=1 -v -parallel 8 -timeout "$TIMEOUT" -run '^TestFaults$' "$@" ./integration/ || status=$?
echo "faults.sh: fault suite took $(( $(date +%s) - start )) s, status $status"
echo "faults.sh: ledger ($PROFILE profile):"
cat "$ledger" 2>/dev/null || true

# The cluster is not needed for fuzzing; stop it first (containers stopped
# with the test binary).
if [ -n "$started" ]; then scripts/kafka.sh down cluster || true; fi
started=""

if [ "$PROFILE" = long ]; then
  fstatus=0
  go test -run '^$' -fuzz '^FuzzMap$' -fuzztime "${FUZZTIME:-8000000x}" ./mapping/ || fstatus=$?
  echo "faults.sh: FuzzMap for ${FUZZTIME:-8000000x}: status $fstatus"
  [ "$status" != 0 ] || status=$fstatus
fi
exit "$status"
