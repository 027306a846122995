# produktly-segment image: a static Go binary on distroless, run as the
# non-root user 65532. Build it with (BuildKit: DOCKER_BUILDKIT=1 or buildx)
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t produktly-segment .
#
# The two base images are build arguments. The defaults are the public
# golang and distroless images; CI (scripts/images.sh service) passes local
# stand-ins built without a registry:
#
#   --build-arg BUILDER_IMAGE=<Debian + Go> --build-arg RUNTIME_IMAGE=<CA certificates + nonroot>
#
# No "# syntax=" line: the frontend built into the engine is enough, and
# naming one makes BuildKit fetch it from a registry.
#
# The build flags below are also what deploy/binary_test.go parses and uses
# to prove, without Docker, that the binary they produce is static and runs.
# Keep them on one `go build` line.

ARG GO_VERSION=1.26
ARG BUILDER_IMAGE=golang:${GO_VERSION}
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

# The builder runs on the build machine's platform and cross-compiles for the
# target (BuildKit sets TARGETOS/TARGETARCH; empty means the host's).
FROM --platform=$BUILDPLATFORM ${BUILDER_IMAGE} AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
# Modules first, so a source change does not re-download them. GOTOOLCHAIN=local:
# fail loudly if the image's Go is older than go.mod asks, instead of
# downloading a toolchain during the build.
ENV GOTOOLCHAIN=local
# Empty means Go's default proxy; CI passes the machine's GOPROXY.
ARG GOPROXY
ENV GOPROXY=${GOPROXY}
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/produktly-segment ./cmd/produktly-segment

# distroless/static: CA certificates (Segment and Kafka TLS), tzdata and a
# passwd entry for nonroot (65532), no shell, no package manager.
FROM ${RUNTIME_IMAGE}
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
