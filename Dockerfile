# syntax=docker/dockerfile:1
#
# produktly-segment image: a static Go binary on distroless, run as the
# non-root user 65532. Build it with
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t produktly-segment .
#
# The build flags below are also what deploy/binary_test.go parses and uses
# to prove, without Docker, that the binary they produce is static and runs.
# Keep them on one `go build` line.

ARG GO_VERSION=1.26

# The builder runs on the build machine's platform and cross-compiles for the
# target (BuildKit sets TARGETOS/TARGETARCH; empty means the host's).
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
# Modules first, so a source change does not re-download them. GOTOOLCHAIN=local:
# fail loudly if the image's Go is older than go.mod asks, instead of
# downloading a toolchain during the build.
ENV GOTOOLCHAIN=local
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/produktly-segment ./cmd/produktly-segment

# distroless/static: CA certificates (Segment and Kafka TLS), tzdata and a
# passwd entry for nonroot (65532), no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="produktly-segment" \
      org.opencontainers.image.description="Produktly interaction records from Kafka to Segment" \
      org.opencontainers.image.source="https://github.com/produktly/produktly-segment" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/produktly-segment /produktly-segment
USER 65532:65532
# ADMIN_ADDR: /healthz, /readyz, /metrics. The service takes no other traffic.
EXPOSE 8080
ENTRYPOINT ["/produktly-segment"]
CMD ["run"]
