# The builder stand-in for golang:<version>: the Debian rootfs plus the Go
# installation of the machine that builds (scripts/images.sh copies
# `go env GOROOT` into the context as go/) and its CA bundle, so the one
# network access of the build (`go mod download` from the machine's GOPROXY,
# over `docker build --network host`) trusts what the machine trusts.
ARG BASE
FROM ${BASE}
COPY go/ /usr/local/go/
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    GOPATH=/go \
    GOTOOLCHAIN=local
WORKDIR /go
