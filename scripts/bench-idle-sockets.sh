#!/usr/bin/env bash
# What an idle browser socket (connected, welcomed, no join) costs a release
# coordinator: RSS before and at the peak with N sockets open (BENCHMARKS.md, 4).
#   scripts/bench-idle-sockets.sh [N]     (default 1000; COORD_BIN=another build)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${1:-1000}
cd "$ROOT"
cargo build -q --release -p coordinator
SECRET="idle-secret-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export THRONG_TOKEN_SECRET=$SECRET THRONG_API_KEY=$SECRET-api THRONG_ADMIN_KEY=$SECRET-admin
LISTEN=127.0.0.1:8282
# No media node is needed to hold sockets; the node list is polled in vain.
THRONG_LISTEN=$LISTEN THRONG_MEDIA_NODES=127.0.0.1:9 RUST_LOG=warn "${COORD_BIN:-target/release/coordinator}" >/dev/null 2>&1 & C=$!
trap 'kill $C 2>/dev/null; wait $C 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do curl -fsS "http://$LISTEN/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
rss() { awk '/^VmRSS/ {print $2}' "/proc/$C/status"; }
before=$(rss)
(cd client-web && node bench/idle-sockets.mjs "ws://$LISTEN/ws" "$N" 3000) & NODE=$!
peak=$before
while kill -0 $NODE 2>/dev/null; do m=$(rss); [ "$m" -gt "$peak" ] && peak=$m; sleep 0.2; done
echo "coordinator RSS $((before / 1024)) MiB before, $((peak / 1024)) MiB with $N idle sockets: $(( (peak - before) / N )) KiB per socket"
