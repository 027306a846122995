#!/bin/bash
# Entrypoint of the project's Kafka image. It follows the convention of the
# apache/kafka image, so the tests start either image with the same
# environment:
#   KAFKA_FOO_BAR=v         -> foo.bar=v in server.properties
#   __ in a name            -> _   (KAFKA_LISTENER_NAME_SASL__SSL_... -> listener.name.sasl_ssl...)
#   ___ in a name           -> -   (..._SCRAM___SHA___512_... -> scram-sha-512)
#   CLUSTER_ID              the cluster id the storage is formatted with
#   KAFKA_HEAP_OPTS, KAFKA_OPTS, KAFKA_LOG4J_* and the other launcher
#   variables are not broker properties.
# The storage is formatted on the first start only, so a container that is
# killed and started again keeps its log and metadata.
set -euo pipefail
home=/opt/kafka
conf=$home/config
version=$(cat "$home/VERSION")

not_a_property() {
  case "$1" in
    KAFKA_VERSION|KAFKA_HOME|KAFKA_HEAP_OPTS|KAFKA_OPTS|KAFKA_JVM_PERFORMANCE_OPTS|KAFKA_GC_LOG_OPTS|KAFKA_JMX_OPTS|KAFKA_JMX_PORT|KAFKA_JMX_HOSTNAME|KAFKA_DEBUG|KAFKA_LOG4J_*|KAFKA_TOOLS_LOG4J_LOGLEVEL) return 0 ;;
  esac
  return 1
}

props=$conf/server.properties
: > "$props"
have_log_dirs=""
while IFS= read -r -d '' kv; do
  name=${kv%%=*}
  value=${kv#*=}
  case "$name" in KAFKA_*) ;; *) continue ;; esac
  not_a_property "$name" && continue
  key=${name#KAFKA_}
  key=${key//___/$'\x01'}
  key=${key//__/$'\x02'}
  key=${key//_/.}
  key=${key//$'\x01'/-}
  key=${key//$'\x02'/_}
  key=${key,,}
  [ "$key" = log.dirs ] && have_log_dirs=1
  printf '%s=%s\n' "$key" "$value" >> "$props"
done < <(env -0)
[ -n "$have_log_dirs" ] || echo "log.dirs=/tmp/kraft-combined-logs" >> "$props"

cat > "$conf/log4j2.properties" <<'L4J'
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = ${env:KAFKA_LOG4J_ROOT_LOGLEVEL:-INFO}
rootLogger.appenderRef.out.ref = OUT
logger.state.name = state.change.logger
logger.state.level = WARN
L4J

log4j="-Dlog4j2.configurationFile=$conf/log4j2.properties"
echo "kafka-entrypoint: Apache Kafka $version, node ${KAFKA_NODE_ID:-?}, roles ${KAFKA_PROCESS_ROLES:-?}" >&2
# A restarted container's storage is formatted already: skip the extra JVM
# start of the storage tool, which would only delay the broker.
logdir=$(sed -n 's/^log\.dirs=//p' "$props" | tail -n1 | cut -d, -f1)
if [ ! -f "$logdir/meta.properties" ]; then
  java -Xmx256m "$log4j" -cp "$home/libs/*" kafka.tools.StorageTool format --ignore-formatted \
    -t "${CLUSTER_ID:-5L6g3nShT-eMCtK--X86sw}" -c "$props" >&2
fi

# shellcheck disable=SC2086
exec java ${KAFKA_HEAP_OPTS:--Xms512m -Xmx1g} -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
  -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 \
  -Djava.awt.headless=true "$log4j" ${KAFKA_OPTS:-} -cp "$home/libs/*" kafka.Kafka "$props"
