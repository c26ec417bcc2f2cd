#!/usr/bin/env bash
# Installs everything the build and the tests need on a Debian bookworm machine
# that reaches only the package registries: Debian packages (when missing), the
# prepared mediasoup-sys inputs, and the npm packages of the browser tests.
# Idempotent and quick when everything is already there.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

DEB_PACKAGES=(
  # mediasoup worker build inputs (scripts/prepare-mediasoup.sh)
  libssl-dev flatbuffers-compiler libflatbuffers-dev libabsl-dev pkg-config dpkg-dev
  # gRPC codegen
  protobuf-compiler
  # real components started by tests and by `make run`
  redis-server
  # real browser for the browser tests
  chromium chromium-driver
  # loopback-only network namespaces for WebRTC tests
  iproute2 util-linux curl
  # the documented ingest command is tested with ffmpeg
  ffmpeg
)

missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "install-deps: installing Debian packages: ${missing[*]}" >&2
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

for tool in cargo node npm python3; do
  command -v "$tool" >/dev/null || { echo "install-deps: $tool is required and not on PATH" >&2; exit 1; }
done
if ! command -v cargo-nextest >/dev/null; then
  echo "install-deps: installing cargo-nextest from crates.io" >&2
  cargo install --locked cargo-nextest
fi

"$ROOT/scripts/prepare-mediasoup.sh"

# npm packages: the web client (built into client-web/dist, served by the
# coordinator) and the worker round-trip page. Reinstalled only when a
# lockfile changed; builds take well under a second.
for pkg in client-web e2e; do
  dir="$ROOT/$pkg"
  if [[ ! -f "$dir/node_modules/.package-lock.json" || "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
  (cd "$dir" && npm run --silent build)
done
