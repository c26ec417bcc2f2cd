#!/usr/bin/env bash
# Cross-node pipe (BENCHMARKS.md, figure 3): Redis, two media nodes with one
# worker each, one coordinator whose worker capacity (26 units per
# participant at 12 tiles, for SENDERS + 1 participants) makes the last
# participant spill to the other node; `loadgen pipe` sends VP8 + Opus from
# SENDERS str0m senders to a receiver on their worker and one on the other
# node (through the SRTP pipe). With one sender it compares the one-way
# latency of the same packets on both paths; with any number it prints both
# nodes' worker CPU in three windows and the cost per piped producer.
#   unshare --net -- sh -c 'ip link set lo up && SENDERS=6 scripts/bench-pipe.sh'
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WINDOW=${WINDOW_SECS:-15}
SENDERS=${SENDERS:-1}
cd "$ROOT"
cargo build -q --release -p coordinator -p loadgen -p media-node
SECRET="pipe-secret-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export THRONG_TOKEN_SECRET=$SECRET THRONG_API_KEY=$SECRET-api THRONG_ADMIN_KEY=$SECRET-admin
REDIS_PORT=6394; LISTEN=127.0.0.1:8194
PIDS=()
stop_all() { for ((i=${#PIDS[@]}-1; i>=0; i--)); do kill -TERM "${PIDS[$i]}" 2>/dev/null || true; wait "${PIDS[$i]}" 2>/dev/null || true; done; PIDS=(); }
trap stop_all EXIT
redis-server --port $REDIS_PORT --bind 127.0.0.1 --save "" --appendonly no >/dev/null & PIDS+=($!)
sleep 0.5
NODES=()
for i in 1 2; do
  THRONG_NODE_ID=pipe-node-$i THRONG_WORKERS=1 THRONG_RTC_LISTEN_IP=127.0.0.1 THRONG_RTC_BASE_PORT=$((45000 + i)) \
  THRONG_GRPC_LISTEN=127.0.0.1:$((50190 + i)) THRONG_HTTP_LISTEN=127.0.0.1:$((9195 + i)) \
  THRONG_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/ RUST_LOG=warn target/release/media-node >/dev/null & NODES+=($!); PIDS+=($!)
done
sleep 1
THRONG_LISTEN=$LISTEN THRONG_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/ THRONG_WORKER_CAPACITY=$((26 * (SENDERS + 1))) \
RUST_LOG=warn target/release/coordinator >/dev/null & PIDS+=($!)
for _ in $(seq 1 50); do curl -fsS "http://$LISTEN/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
sleep 1.5
echo "commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, node pids ${NODES[*]}"
target/release/loadgen pipe --url "ws://$LISTEN/ws" \
  --node-pids "${NODES[0]},${NODES[1]}" --window-secs "$WINDOW" --senders "$SENDERS"
