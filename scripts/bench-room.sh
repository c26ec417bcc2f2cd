#!/usr/bin/env bash
# Media scenarios through the coordinator (BENCHMARKS.md, "Rooms and churn"):
# Redis, one media node (one worker per core: a room that outgrows a worker is
# piped to the other), one coordinator, all release builds; then
#   loadgen room  : one room of PARTICIPANTS receivers + SENDERS senders
#   loadgen rooms : ROOMS rooms of 8 receivers + 4 senders
#   loadgen churn : 5 cycles of 20 participants joining, sending or consuming, leaving
#   unshare --net -- sh -c 'ip link set lo up && scripts/bench-room.sh [PARTICIPANTS] [SENDERS] [ROOMS]'
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PARTICIPANTS=${1:-30}; SENDERS=${2:-6}; ROOMS=${3:-5}
cd "$ROOT"
cargo build -q --release -p coordinator -p loadgen -p media-node
SECRET="room-secret-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export THRONG_TOKEN_SECRET=$SECRET THRONG_API_KEY=$SECRET-api THRONG_ADMIN_KEY=$SECRET-admin
REDIS_PORT=6395; GRPC=127.0.0.1:50181; LISTEN=127.0.0.1:8193
PIDS=()
stop_all() { for ((i=${#PIDS[@]}-1; i>=0; i--)); do kill -TERM "${PIDS[$i]}" 2>/dev/null || true; wait "${PIDS[$i]}" 2>/dev/null || true; done; PIDS=(); }
trap stop_all EXIT
redis-server --port $REDIS_PORT --bind 127.0.0.1 --save "" --appendonly no >/dev/null & PIDS+=($!)
sleep 0.5
THRONG_NODE_ID=room-node THRONG_RTC_LISTEN_IP=127.0.0.1 THRONG_RTC_BASE_PORT=44000 \
THRONG_GRPC_LISTEN=$GRPC THRONG_HTTP_LISTEN=127.0.0.1:9194 THRONG_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/ \
RUST_LOG=warn target/release/media-node >/dev/null & NODE=$!; PIDS+=($NODE)
sleep 1
THRONG_LISTEN=$LISTEN THRONG_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/ \
RUST_LOG=warn target/release/coordinator >/dev/null & PIDS+=($!)
for _ in $(seq 1 50); do curl -fsS "http://$LISTEN/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
sleep 1.5
echo "commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores"
target/release/loadgen room --url "ws://$LISTEN/ws" --participants "$PARTICIPANTS" \
  --senders "$SENDERS" --window-secs 10 --node-pid "$NODE" || true
sleep 3
target/release/loadgen rooms --url "ws://$LISTEN/ws" --rooms "$ROOMS" --participants 8 \
  --senders 4 --window-secs 10 --node-pid "$NODE" || true
sleep 3
target/release/loadgen churn --url "ws://$LISTEN/ws" \
  --cycles 5 --participants 20
