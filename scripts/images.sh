#!/usr/bin/env bash
# Builds Throng's five images (coordinator, media-node, proxy, redis, turn) from the
# repository's Dockerfile into a private Docker engine, offline:
#
#   - the engine is Debian's dockerd, started here with its own data root
#     (target/docker/data), exec root and socket, no bridge and no iptables
#     rules (builds use the host's network), and stopped again at the end;
#   - the base image `debian:bookworm-slim` that the Dockerfile names is made
#     once with `debootstrap --variant=minbase` from this machine's Debian
#     mirror and `docker import` (there is no image registry here);
#   - the binaries are the ones `make build` already made (target/debug, debug
#     info stripped), staged in target/image-dist/ and taken with
#     `--build-arg BINARIES=prebuilt`: the workspace is not compiled twice.
#
#   scripts/images.sh --from-source
#     builds the images the way `docker compose build` does anywhere else: the
#     Dockerfile's `build` stage compiles the worker and the release binaries
#     inside the container (about 20 minutes on 2 cores, BENCHMARKS.md section
#     6). Its base, the official rust image the Dockerfile names, is made here
#     from deploy/rust-image/Dockerfile (the official recipe; rustup downloads
#     the toolchain from static.rust-lang.org) when the engine does not have it.
#     Not part of the test suite.
#
# Images persist in target/docker/data, so the second run only re-copies the
# binaries. The compose test (deploy/tests) starts the same data root inside
# its network namespace. Elsewhere, build from source with plain
# `docker compose build` (README, "Running with Docker").
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TAG=${THRONG_TAG:-0.1.0}
BIN=${THRONG_IMAGE_BIN:-$ROOT/target/debug}
DATA="$ROOT/target/docker/data"
ROOTFS="$ROOT/target/docker/rootfs"
EXEC=/tmp/throng-docker-build-$(printf %s "$ROOT" | sha256sum | cut -c1-8)
SOCK="$EXEC/docker.sock"
DOCKER=(/usr/bin/docker -H "unix://$SOCK")
export DOCKER_BUILDKIT=1

log() { printf 'images: %s\n' "$*" >&2; }

FROM_SOURCE=0
case "${1:-}" in
  "") ;;
  --from-source) FROM_SOURCE=1 ;;
  *) log "usage: scripts/images.sh [--from-source]"; exit 2 ;;
esac

if [[ $FROM_SOURCE -eq 0 ]]; then
  for f in coordinator media-node; do
    [[ -x "$BIN/$f" ]] || { log "$BIN/$f is missing: run make build first"; exit 1; }
  done
  [[ -f "$ROOT/client-web/dist/index.html" ]] || { log "client-web/dist is missing: run make build first"; exit 1; }
fi

mkdir -p "$DATA" "$EXEC"
# One builder at a time on this data root.
exec 9>"$ROOT/target/docker/.lock"
flock 9

dockerd --data-root "$DATA" --exec-root "$EXEC/exec" --pidfile "$EXEC/dockerd.pid" \
  -H "unix://$SOCK" --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
  --userland-proxy=false >"$EXEC/dockerd.log" 2>&1 &
DOCKERD=$!
stop() {
  kill -TERM "$DOCKERD" 2>/dev/null || true
  wait "$DOCKERD" 2>/dev/null || true
  rm -rf "$EXEC"
}
trap stop EXIT
for _ in $(seq 1 100); do "${DOCKER[@]}" info >/dev/null 2>&1 && break; sleep 0.2; done
"${DOCKER[@]}" info >/dev/null || { cat "$EXEC/dockerd.log" >&2; exit 1; }
# Everything made from here on is removed on exit, failure included.

if ! "${DOCKER[@]}" image inspect debian:bookworm-slim >/dev/null 2>&1; then
  MIRROR=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
  log "making debian:bookworm-slim with debootstrap from $MIRROR (about a minute)"
  rm -rf "$ROOTFS"
  debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" >"$EXEC/debootstrap.log" 2>&1 \
    || { tail -20 "$EXEC/debootstrap.log" >&2; exit 1; }
  # What the official slim image leaves out, now and in every later apt-get:
  # documentation, manuals, locales, package lists and apt's caches.
  cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/docker-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
CFG
  cat >"$ROOTFS/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
  find "$ROOTFS/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  rm -rf "$ROOTFS"/usr/share/{man,groff,info,lintian,linda,locale}/* \
    "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb
  tar -C "$ROOTFS" -c . | "${DOCKER[@]}" import --change 'CMD ["bash"]' - debian:bookworm-slim >/dev/null
  rm -rf "$ROOTFS"
fi

BUILD_ARGS=(--build-arg VERSION="$TAG")
if [[ $FROM_SOURCE -eq 1 ]]; then
  RUST_IMAGE=$(sed -n 's/^ARG RUST_IMAGE=//p' "$ROOT/Dockerfile")
  if ! "${DOCKER[@]}" image inspect "$RUST_IMAGE" >/dev/null 2>&1; then
    CTX="$ROOT/target/docker/rust-image"
    rm -rf "$CTX"
    mkdir -p "$CTX/extra-ca"
    cp "$ROOT/deploy/rust-image/Dockerfile" "$CTX/"
    cp /usr/local/share/ca-certificates/*.crt "$CTX/extra-ca/" 2>/dev/null || true
    start=$(date +%s)
    "${DOCKER[@]}" build --progress=plain --network host -t "$RUST_IMAGE" "$CTX" >"$EXEC/rust-image.log" 2>&1 \
      || { tail -30 "$EXEC/rust-image.log" >&2; exit 1; }
    log "$RUST_IMAGE made from deploy/rust-image/Dockerfile in $(( $(date +%s) - start )) s"
  fi
else
  STAGE="$ROOT/target/image-dist"
  rm -rf "$STAGE"
  mkdir -p "$STAGE/bin"
  for f in coordinator media-node; do
    objcopy --strip-debug "$BIN/$f" "$STAGE/bin/$f"
  done
  cp -r "$ROOT/client-web/dist" "$STAGE/web"
  BUILD_ARGS+=(--build-arg BINARIES=prebuilt)
fi

for target in redis proxy turn coordinator media-node; do
  start=$(date +%s)
  "${DOCKER[@]}" build --progress=plain --network host "${BUILD_ARGS[@]}" \
    --target "$target" -t "throng/$target:$TAG" "$ROOT" >"$EXEC/build-$target.log" 2>&1 \
    || { tail -40 "$EXEC/build-$target.log" >&2; exit 1; }
  size=$("${DOCKER[@]}" image inspect -f '{{.Size}}' "throng/$target:$TAG")
  log "throng/$target:$TAG built in $(( $(date +%s) - start )) s, $(( size / 1000000 )) MB"
done
