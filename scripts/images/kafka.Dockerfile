# The project's Kafka broker image: the Debian rootfs with a JRE
# (scripts/images.sh builds it with debootstrap), the broker jars from the
# Maven cache scripts/kafka.sh fetch fills, and an entrypoint that follows
# the environment convention of the apache/kafka image. Built by
# scripts/images.sh kafka; no registry is needed.
ARG BASE
FROM ${BASE}
ARG KAFKA_VERSION
LABEL org.opencontainers.image.title="produktly-segment test broker" \
      org.apache.kafka.version="${KAFKA_VERSION}"
# appuser (1000), like apache/kafka, so files the tests copy in are read the same way.
RUN useradd --uid 1000 --user-group --home-dir /opt/kafka --no-create-home appuser \
 && mkdir -p /opt/kafka/config \
 && chown appuser:appuser /opt/kafka/config \
 && echo "${KAFKA_VERSION}" > /opt/kafka/VERSION
COPY libs/ /opt/kafka/libs/
COPY kafka-entrypoint.sh /opt/kafka/entrypoint.sh
USER appuser
WORKDIR /opt/kafka
ENTRYPOINT ["/opt/kafka/entrypoint.sh"]
