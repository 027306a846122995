# The builder stand-in for golang:<version>: the Debian rootfs plus the Go
# installation of the machine that builds (scripts/images.sh copies
# `go env GOROOT` into the context as go/).
ARG BASE
FROM ${BASE}
COPY go/ /usr/local/go/
ENV PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    GOPATH=/go \
    GOTOOLCHAIN=local
WORKDIR /go
