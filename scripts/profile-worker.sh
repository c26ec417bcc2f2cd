#!/usr/bin/env bash
# Where a loaded mediasoup worker spends its time (BENCHMARKS.md, figure 2):
# the capacity set-up (Redis, one media node with ONE worker, a coordinator,
# `loadgen capacity` with one sender and RECEIVERS str0m receivers), and perf
# (Debian's linux-perf) sampling the worker thread for 15 s once they are in.
#   unshare --net -- sh -c 'ip link set lo up && scripts/profile-worker.sh [RECEIVERS]'
# NODE_BIN profiles another media-node build.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RECEIVERS=${1:-300}
cd "$ROOT"
cargo build -q --release -p coordinator -p loadgen -p media-node
SECRET="prof-secret-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export THRONG_TOKEN_SECRET=$SECRET THRONG_API_KEY=$SECRET-api THRONG_ADMIN_KEY=$SECRET-admin
REDIS_PORT=6396; GRPC=127.0.0.1:50171; LISTEN=127.0.0.1:8192
PIDS=()
# Stop newest first (loadgen, coordinator, media node, Redis last), each waited for.
stop_all() { for ((i=${#PIDS[@]}-1; i>=0; i--)); do kill -TERM "${PIDS[$i]}" 2>/dev/null || true; wait "${PIDS[$i]}" 2>/dev/null || true; done; PIDS=(); }
trap stop_all EXIT
redis-server --port $REDIS_PORT --bind 127.0.0.1 --save "" --appendonly no >/dev/null & PIDS+=($!)
sleep 0.5
THRONG_NODE_ID=prof-node THRONG_WORKERS=1 THRONG_RTC_LISTEN_IP=127.0.0.1 THRONG_RTC_BASE_PORT=43000 \
THRONG_GRPC_LISTEN=$GRPC THRONG_HTTP_LISTEN=127.0.0.1:9193 THRONG_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/ \
RUST_LOG=warn "${NODE_BIN:-target/release/media-node}" >/dev/null & NODE=$!; PIDS+=($NODE)
sleep 1
THRONG_LISTEN=$LISTEN THRONG_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/ THRONG_WORKER_CAPACITY=200000 \
RUST_LOG=warn target/release/coordinator >/dev/null & PIDS+=($!)
for _ in $(seq 1 50); do curl -fsS "http://$LISTEN/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
sleep 1.5
target/release/loadgen capacity --url "ws://$LISTEN/ws" --node-pid "$NODE" \
  --steps "$RECEIVERS" --settle-secs 2 --window-secs 40 > /tmp/throng-profile-load.txt 2>&1 & LOAD=$!; PIDS+=($LOAD)
TID=$(grep -l '^mediasoup-work' /proc/$NODE/task/*/comm | head -1 | cut -d/ -f5)
# Wait until the receivers are in (the worker's consumer count reaches 2 x RECEIVERS).
for _ in $(seq 1 240); do
  n=$(curl -fsS -H "x-admin-key: $THRONG_ADMIN_KEY" "http://$LISTEN/admin/nodes" | python3 -c 'import json,sys; print(sum(w["consumers"] for n in json.load(sys.stdin)["nodes"] for w in n["workers"]))')
  [ "$n" -ge $((2 * RECEIVERS)) ] && break; sleep 0.5
done
sleep 3
echo "commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%dT%H:%MZ), worker thread $TID, $n consumers, node ${NODE_BIN:-target/release/media-node}"
perf record -q -e cpu-clock -F 999 -g -t "$TID" -o /tmp/throng-worker.perf -- sleep 15 2>/dev/null
wait $LOAD || true
cat /tmp/throng-profile-load.txt | grep -v '^  '
perf report -i /tmp/throng-worker.perf --stdio --no-children --sort symbol 2>/dev/null | grep -E '^ +[0-9]' | head -40
