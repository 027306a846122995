# The runtime stand-in for gcr.io/distroless/static-debian12:nonroot: CA
# certificates, a passwd and group naming nonroot (65532), an empty /tmp and
# nothing else: no shell, no package manager, no libc.
ARG BASE
FROM ${BASE} AS debian
FROM scratch
COPY --from=debian /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY passwd /etc/passwd
COPY group /etc/group
COPY --from=debian /tmp /tmp
COPY --from=debian --chown=65532:65532 /tmp /home/nonroot
USER 65532:65532
WORKDIR /home/nonroot
