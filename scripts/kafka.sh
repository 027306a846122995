#!/usr/bin/env bash
# Starts and stops a real Apache Kafka (KRaft) on loopback for the tests and
# the benchmarks, without Docker: the broker jars come from Maven Central into
# a cache outside the work tree, so a second run is offline.
#
# usage:
#   scripts/kafka.sh up [single|cluster]   start; prints KAFKA_BROKERS=... last
#   scripts/kafka.sh down [single|cluster] stop what "up" started (by pid)
#   scripts/kafka.sh kill N [cluster]      SIGKILL node N (fault tests)
#   scripts/kafka.sh start N [cluster]     restart node N after a kill
#   scripts/kafka.sh brokers [single|cluster]
#   scripts/kafka.sh fetch                 only resolve the jars into the cache
#
# environment:
#   KAFKA_VERSION   org.apache.kafka:kafka_2.13 version (default 4.1.2)
#   KAFKA_CACHE     jar cache (default ${XDG_CACHE_HOME:-$HOME/.cache}/produktly-segment/kafka)
#   KAFKA_RUN_DIR   data, logs, pids (default $KAFKA_CACHE/run-<mode>)
#   KAFKA_HEAP_OPTS JVM heap (default -Xms512m -Xmx1g)
#   KAFKA_PORT_BASE single mode: client port (default 29092); the controller
#                   listens on base+1, the SASL_SSL listener on base+2.
#                   Cluster mode: node N listens on 3N092 (controller 3N093).
#   KAFKA_SCRAM     when set to 1 (single mode): an extra SASL_SSL listener on
#                   base+2 with SCRAM-SHA-256/512 user "produktly" and password
#                   KAFKA_SCRAM_PASSWORD; TLS material in $RUN/tls (ca.crt)
set -euo pipefail

CMD=${1:-up}
shift || true
KV=${KAFKA_VERSION:-4.1.2}
CACHE=${KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/produktly-segment/kafka}
LIBS="$CACHE/libs-$KV"
DEP=org.apache.maven.plugins:maven-dependency-plugin:3.8.1

die() { echo "kafka.sh: $*" >&2; exit 1; }

fetch_jars() {
  [ -f "$LIBS/.done" ] && return 0
  command -v java >/dev/null || die "java not found: install a Java 17 runtime"
  command -v mvn >/dev/null || die "mvn not found: install Maven"
  echo "kafka.sh: resolving org.apache.kafka:kafka_2.13:$KV into $LIBS (first run only)" >&2
  local work
  work=$(mktemp -d)
  cat > "$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>local.test</groupId><artifactId>kafka-broker-libs</artifactId><version>1</version><packaging>pom</packaging>
<dependencies><dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KV</version></dependency></dependencies></project>
POM
  rm -rf "$LIBS.tmp"
  (cd "$work" && mvn -q -B -Dstyle.color=never "$DEP:copy-dependencies" -DincludeScope=runtime -DoutputDirectory="$LIBS.tmp") \
    || die "mvn could not resolve kafka_2.13:$KV (is Maven Central reachable?)"
  # Maven misses the slf4j 1.x binding that the release tarball ships.
  local l4j
  l4j=$(ls "$LIBS.tmp" | sed -n 's/^log4j-core-\(.*\)\.jar$/\1/p')
  [ -n "$l4j" ] || die "log4j-core not among the resolved jars"
  (cd "$work" && mvn -q -B -Dstyle.color=never "$DEP:copy" -Dartifact="org.apache.logging.log4j:log4j-slf4j-impl:$l4j" -DoutputDirectory="$LIBS.tmp") \
    || die "mvn could not resolve log4j-slf4j-impl:$l4j"
  rm -rf "$work" "$LIBS"
  mv "$LIBS.tmp" "$LIBS"
  touch "$LIBS/.done"
}

mode_of() { case "${1:-single}" in single|cluster) echo "${1:-single}" ;; *) die "mode must be single or cluster, not $1" ;; esac; }

setup_mode() {
  MODE=$(mode_of "${1:-single}")
  RUN=${KAFKA_RUN_DIR:-$CACHE/run-$MODE}
  if [ "$MODE" = single ]; then NODES="1"; else NODES="1 2 3"; fi
}

# client port and controller port of node $1
BASE=${KAFKA_PORT_BASE:-29092}
client_port() { if [ "$MODE" = single ]; then echo "$BASE"; else echo "3${1}092"; fi; }
ctrl_port() { if [ "$MODE" = single ]; then echo $((BASE + 1)); else echo "3${1}093"; fi; }
SCRAM_PORT=$((BASE + 2))

brokers() {
  local out="" n
  for n in $NODES; do out="${out:+$out,}127.0.0.1:$(client_port "$n")"; done
  echo "$out"
}

java_opts() {
  echo "${KAFKA_HEAP_OPTS:--Xms512m -Xmx1g} -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 \
 -Djava.awt.headless=true -Dlog4j2.configurationFile=$RUN/log4j2.properties -Dkafka.logs.dir=$RUN/logs"
}

tool() { java -Xmx256m -Dlog4j2.configurationFile="$RUN/tools-log4j2.properties" -cp "$LIBS/*" kafka.tools.StorageTool "$@"; }

write_logging() {
  cat > "$RUN/log4j2.properties" <<'L4J'
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.state.name = state.change.logger
logger.state.level = WARN
L4J
  cat > "$RUN/tools-log4j2.properties" <<'L4J'
appender.err.type = Console
appender.err.name = ERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = ERR
L4J
}

node_properties() { # $1 = node id
  local n=$1 rf=1 isr=1
  if [ "$MODE" = cluster ]; then rf=3; isr=2; fi
  local listeners="PLAINTEXT://127.0.0.1:$(client_port "$n"),CONTROLLER://127.0.0.1:$(ctrl_port "$n")"
  local advertised="PLAINTEXT://127.0.0.1:$(client_port "$n")"
  local protomap="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
  if [ "${KAFKA_SCRAM:-0}" = 1 ] && [ "$MODE" = single ]; then
    listeners="$listeners,SASL_SSL://127.0.0.1:$SCRAM_PORT"
    advertised="$advertised,SASL_SSL://127.0.0.1:$SCRAM_PORT"
    protomap="$protomap,SASL_SSL:SASL_SSL"
  fi
  cat <<P
process.roles=broker,controller
node.id=$n
listeners=$listeners
advertised.listeners=$advertised
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=$protomap
log.dirs=$RUN/data-$n
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
message.max.bytes=1048588
log.segment.bytes=104857600
P
  if [ "$MODE" = single ]; then
    echo "controller.quorum.bootstrap.servers=127.0.0.1:$(ctrl_port 1)"
  else
    echo "controller.quorum.voters=1@127.0.0.1:$(ctrl_port 1),2@127.0.0.1:$(ctrl_port 2),3@127.0.0.1:$(ctrl_port 3)"
  fi
  if [ "${KAFKA_SCRAM:-0}" = 1 ] && [ "$MODE" = single ]; then
    cat <<P
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=$RUN/tls/server.pem
ssl.truststore.type=PEM
ssl.truststore.location=$RUN/tls/ca.crt
ssl.client.auth=none
P
  fi
}

make_tls() {
  command -v openssl >/dev/null || die "openssl not found (needed for KAFKA_SCRAM=1)"
  local d="$RUN/tls"
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=produktly-test-ca" \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$d/san.ext"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
    -extfile "$d/san.ext" -out "$d/server.crt" 2>/dev/null
  # Kafka's PEM keystore wants an unencrypted PKCS#8 key followed by the chain.
  openssl pkcs8 -topk8 -nocrypt -in "$d/server.key" -out "$d/server.pk8"
  cat "$d/server.pk8" "$d/server.crt" > "$d/server.pem"
}

start_node() { # $1 = node id
  local n=$1
  mkdir -p "$RUN/logs"
  # shellcheck disable=SC2046
  nohup java $(java_opts) -cp "$LIBS/*" kafka.Kafka "$RUN/node$n.properties" >> "$RUN/logs/node$n.out" 2>&1 &
  echo $! > "$RUN/node$n.pid"
}

wait_port() { # $1 = port, $2 = node id
  local i
  for i in $(seq 1 240); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    if ! kill -0 "$(cat "$RUN/node$2.pid")" 2>/dev/null; then
      tail -n 30 "$RUN/logs/node$2.out" >&2 || true
      die "broker node $2 exited before its port $1 opened (log: $RUN/logs/node$2.out)"
    fi
    sleep 0.5
  done
  tail -n 30 "$RUN/logs/node$2.out" >&2 || true
  die "broker node $2 port $1 not ready after 120 s (log: $RUN/logs/node$2.out)"
}

stop_node() { # $1 = node id, $2 = signal
  local pidf="$RUN/node$1.pid" pid i
  [ -f "$pidf" ] || return 0
  pid=$(cat "$pidf")
  if kill -0 "$pid" 2>/dev/null; then
    kill "-$2" "$pid" 2>/dev/null || true
    for i in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidf"
}

up() {
  fetch_jars
  for n in $NODES; do
    if [ -f "$RUN/node$n.pid" ] && kill -0 "$(cat "$RUN/node$n.pid")" 2>/dev/null; then
      die "a $MODE broker started from $RUN is already running; run: $0 down $MODE"
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$(client_port "$n")") 2>/dev/null; then
      die "port $(client_port "$n") is taken by another process"
    fi
  done
  rm -rf "$RUN"
  mkdir -p "$RUN"
  write_logging
  [ "${KAFKA_SCRAM:-0}" = 1 ] && [ "$MODE" = single ] && make_tls
  local cid n scram=()
  cid=$(tool random-uuid)
  if [ "${KAFKA_SCRAM:-0}" = 1 ] && [ "$MODE" = single ]; then
    [ -n "${KAFKA_SCRAM_PASSWORD:-}" ] || die "KAFKA_SCRAM=1 needs KAFKA_SCRAM_PASSWORD"
    scram=(--add-scram "SCRAM-SHA-512=[name=produktly,password=$KAFKA_SCRAM_PASSWORD]"
           --add-scram "SCRAM-SHA-256=[name=produktly,password=$KAFKA_SCRAM_PASSWORD]")
  fi
  for n in $NODES; do
    node_properties "$n" > "$RUN/node$n.properties"
    if [ "$MODE" = single ]; then
      tool format --standalone -t "$cid" -c "$RUN/node$n.properties" "${scram[@]}" >/dev/null
    else
      tool format -t "$cid" -c "$RUN/node$n.properties" >/dev/null
    fi
  done
  for n in $NODES; do start_node "$n"; done
  for n in $NODES; do wait_port "$(client_port "$n")" "$n"; done
  local version
  version=$(ls "$LIBS" | sed -n 's/^kafka_2\.13-\(.*\)\.jar$/\1/p' | head -n1)
  echo "kafka.sh: Apache Kafka $version ($MODE, cluster id $cid) ready in $RUN" >&2
  if [ "${KAFKA_SCRAM:-0}" = 1 ] && [ "$MODE" = single ]; then
    echo "KAFKA_SCRAM_BROKERS=127.0.0.1:$SCRAM_PORT"
    echo "KAFKA_SCRAM_CA_FILE=$RUN/tls/ca.crt"
  fi
  echo "KAFKA_BROKERS=$(brokers)"
}

down() {
  for n in $NODES; do stop_node "$n" TERM; done
  echo "kafka.sh: $MODE broker stopped" >&2
}

case "$CMD" in
  fetch) fetch_jars ;;
  up) setup_mode "${1:-single}"; up ;;
  down) setup_mode "${1:-single}"; down ;;
  brokers) setup_mode "${1:-single}"; brokers ;;
  kill)
    [ -n "${1:-}" ] || die "usage: $0 kill N [cluster]"
    setup_mode "${2:-cluster}"; stop_node "$1" KILL ;;
  start)
    [ -n "${1:-}" ] || die "usage: $0 start N [cluster]"
    setup_mode "${2:-cluster}"; fetch_jars; start_node "$1"; wait_port "$(client_port "$1")" "$1" ;;
  *) die "unknown command $CMD (up, down, kill, start, brokers, fetch)" ;;
esac
