#!/usr/bin/env bash
# Builds the images the containerized tests run, locally, without pulling
# from a registry: every base comes from a Debian rootfs made with
# debootstrap. Each image is tagged by a hash of its inputs and built only
# when no image with that tag exists, so a second run builds nothing.
#
# usage:
#   scripts/images.sh kafka     the Kafka broker image; prints KAFKA_IMAGE=... last
#   scripts/images.sh service   the service image (the repository's Dockerfile with
#                               local stand-ins for its bases); prints SERVICE_IMAGE=...
#   scripts/images.sh all       both, both lines
#
# environment:
#   DOCKER          the docker client (default: the one of Debian's docker.io
#                   package, which drives the daemon's embedded BuildKit)
#   KAFKA_VERSION   the broker version (default 4.1.2); its jars come from the
#                   cache scripts/kafka.sh fetch fills
#   KAFKA_CACHE     that cache (default ${XDG_CACHE_HOME:-$HOME/.cache}/produktly-segment/kafka)
#   DEBIAN_MIRROR   the Debian mirror for debootstrap (default: the machine's
#                   apt sources)
set -euo pipefail
cd "$(dirname "$0")/.."

KV=${KAFKA_VERSION:-4.1.2}
CACHE=${KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/produktly-segment/kafka}
SUITE=bookworm
PACKAGES=ca-certificates,openjdk-17-jre-headless
HERE=scripts/images

die() { echo "images.sh: $*" >&2; exit 1; }
log() { echo "images.sh: $*" >&2; }

docker_client() {
  if [ -n "${DOCKER:-}" ]; then echo "$DOCKER"; return; fi
  local c
  c=$(dpkg -L docker.io 2>/dev/null | awk '/\/bin\/docker$/ && !f { print; f = 1 }')
  [ -n "$c" ] || die "Debian's docker.io client not found (apt-get install docker.io), or set DOCKER"
  echo "$c"
}
DOCKER=$(docker_client)
export DOCKER_BUILDKIT=1

# The Debian mirror the machine's apt uses for $SUITE (deb822 .sources or
# one-line sources.list), so nothing here names a host.
apt_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local f m
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    m=$(awk -v s="$SUITE" '
      BEGIN { RS=""; FS="\n" }
      {
        uris=""; suites=""; comps=""
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { uris=$i; sub(/^URIs:[ \t]*/, "", uris) }
          if ($i ~ /^Suites:/) { suites=" " $i " "; sub(/^ Suites:/, "", suites) }
          if ($i ~ /^Components:/) { comps=" " $i " " }
        }
        if (index(suites, " " s " ") && index(comps, " main ")) { split(uris, u, " "); print u[1]; exit }
      }' "$f")
    if [ -n "$m" ]; then echo "$m"; return; fi
  done
  if [ -f /etc/apt/sources.list ]; then
    m=$(awk -v s="$SUITE" '$1 == "deb" && $0 !~ /\[/ && $3 == s { print $2; exit } $1 == "deb" && $0 ~ /\]/ { for (i = 2; i <= NF; i++) if ($i ~ /\]$/) break; if ($(i+2) == s) { print $(i+1); exit } }' /etc/apt/sources.list)
    if [ -n "$m" ]; then echo "$m"; return; fi
  fi
  die "no Debian $SUITE mirror in the apt sources; set DEBIAN_MIRROR"
}

image_exists() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

# hash_of FILE... : a short hash of the files' contents and names.
hash_of() { sha256sum "$@" | sha256sum | cut -c1-12; }

# The Debian rootfs with a JRE and CA certificates; the Kafka image, the
# builder and the runtime stand-in start from it.
build_rootfs() {
  local mirror tag work
  mirror=$(apt_mirror)
  tag="produktly-segment-ci/debian:$SUITE-$(printf '%s\n' "$SUITE" "$PACKAGES" "$mirror" | sha256sum | cut -c1-12)"
  if image_exists "$tag"; then echo "$tag"; return; fi
  command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap)"
  log "debootstrap --variant=minbase $SUITE from $mirror (first run only)"
  work=$(mktemp -d /tmp/produktly-rootfs.XXXXXX)
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  local start=$SECONDS
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$work/root" "$mirror" > "$work/debootstrap.log" 2>&1 \
    || { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
  rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
  tar -C "$work/root" -c . | "$DOCKER" import -m "debootstrap $SUITE $PACKAGES" - "$tag" >/dev/null
  log "rootfs image $tag built in $((SECONDS - start)) s"
  echo "$tag"
}

build_kafka() {
  local libs="$CACHE/libs-$KV"
  [ -f "$libs/.done" ] || scripts/kafka.sh fetch
  local base tag ctx
  base=$(build_rootfs)
  # Relative names only: the tag must not depend on where the tree is.
  tag="produktly-segment-ci/kafka:$KV-$( (echo "$base"; (cd "$libs" && ls -1 ./*.jar); cd "$HERE" && hash_of kafka.Dockerfile kafka-entrypoint.sh) | sha256sum | cut -c1-12)"
  if ! image_exists "$tag"; then
    ctx=$(mktemp -d /tmp/produktly-kafka-ctx.XXXXXX)
    mkdir "$ctx/libs"
    cp -l "$libs"/*.jar "$ctx/libs/" 2>/dev/null || cp "$libs"/*.jar "$ctx/libs/"
    cp "$HERE/kafka-entrypoint.sh" "$ctx/"
    local start=$SECONDS
    "$DOCKER" build --network host -q -f "$HERE/kafka.Dockerfile" --build-arg BASE="$base" \
      --build-arg KAFKA_VERSION="$KV" -t "$tag" "$ctx" >/dev/null || { rm -rf "$ctx"; die "kafka image build failed"; }
    rm -rf "$ctx"
    log "kafka image $tag built in $((SECONDS - start)) s"
  fi
  "$DOCKER" tag "$tag" "produktly-segment-ci/kafka:$KV"
  echo "KAFKA_IMAGE=$tag"
}

# The builder stand-in: the rootfs plus this machine's Go installation.
build_builder() {
  local base goroot gover tag ctx
  base=$(build_rootfs)
  goroot=$(go env GOROOT)
  gover=$(go env GOVERSION)
  local cas=/etc/ssl/certs/ca-certificates.crt
  [ -f "$cas" ] || die "no CA bundle at $cas"
  tag="produktly-segment-ci/go-builder:$gover-$( (echo "$base"; hash_of "$HERE/builder.Dockerfile" "$cas") | sha256sum | cut -c1-12)"
  if ! image_exists "$tag"; then
    ctx=$(mktemp -d /tmp/produktly-go-ctx.XXXXXX)
    cp -a "$goroot" "$ctx/go"
    cp "$cas" "$ctx/ca-certificates.crt"
    local start=$SECONDS
    "$DOCKER" build --network host -q -f "$HERE/builder.Dockerfile" --build-arg BASE="$base" -t "$tag" "$ctx" >/dev/null \
      || { rm -rf "$ctx"; die "builder image build failed"; }
    rm -rf "$ctx"
    log "builder image $tag built in $((SECONDS - start)) s"
  fi
  echo "$tag"
}

# The runtime stand-in for distroless static: CA certificates and the
# nonroot user, nothing else.
build_runtime() {
  local base tag
  base=$(build_rootfs)
  tag="produktly-segment-ci/static:$( (echo "$base"; hash_of "$HERE/runtime.Dockerfile") | sha256sum | cut -c1-12)"
  if ! image_exists "$tag"; then
    "$DOCKER" build --network host -q -f "$HERE/runtime.Dockerfile" --build-arg BASE="$base" -t "$tag" "$HERE" >/dev/null \
      || die "runtime image build failed"
    log "runtime image $tag built"
  fi
  echo "$tag"
}

# The service image from the repository's Dockerfile. Its inputs are the
# files the build context holds (.dockerignore applied by git's view of the
# tree: tracked and untracked-but-not-ignored Go sources, go.mod, go.sum).
build_service() {
  local builder runtime srchash tag
  builder=$(build_builder)
  runtime=$(build_runtime)
  srchash=$( (echo "$builder" "$runtime"; git ls-files -co --exclude-standard -- go.mod go.sum Dockerfile .dockerignore '*.go' \
    | grep -v '_test\.go$' | grep -v '/testdata/' | grep -Ev '^(deploy|integration|scripts|docs)/' | sort | xargs sha256sum) | sha256sum | cut -c1-12)
  tag="produktly-segment:ci-$srchash"
  if ! image_exists "$tag"; then
    local start=$SECONDS
    "$DOCKER" build --network host -q --build-arg BUILDER_IMAGE="$builder" --build-arg RUNTIME_IMAGE="$runtime" \
      --build-arg GOPROXY="$(go env GOPROXY)" --build-arg VERSION="ci-$srchash" -t "$tag" . >/dev/null \
      || die "service image build failed"
    log "service image $tag built in $((SECONDS - start)) s"
  fi
  "$DOCKER" tag "$tag" produktly-segment:ci
  echo "SERVICE_IMAGE=$tag"
}

case "${1:-}" in
  kafka) build_kafka ;;
  service) build_service ;;
  all) build_kafka; build_service ;;
  *) die "usage: $0 kafka|service|all" ;;
esac
