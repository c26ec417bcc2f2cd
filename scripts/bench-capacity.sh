#!/usr/bin/env bash
# Consumers per worker (BENCHMARKS.md, figure 2), in one run:
#   1. through the cluster: Redis, one media node with ONE worker, one
#      coordinator; `loadgen capacity` joins one sender (VP8 ~500 kbit/s + Opus
#      from ffmpeg) and growing numbers of str0m WebRTC receivers through the
#      coordinator URL, each consuming both streams;
#   2. the baseline: `loadgen direct`, mediasoup driven by a minimal program
#      (no coordinator, no gRPC), same source, same receivers, same steps.
# Both read the mediasoup worker thread's CPU from /proc and the receivers'
# loss and jitter. Run inside a loopback-only namespace so nothing leaves:
#   unshare --net -- sh -c 'ip link set lo up && scripts/bench-capacity.sh 100,200,400'
# NODE_BIN runs another media-node build (e.g. one from an older commit, to
# compare worker builds); DIRECT=0 skips the baseline. PIN=1 pins the media
# node to the last CPU and everything else (Redis, coordinator, receivers) to
# the others, so the worker's figures do not depend on where the scheduler put
# whom (the A/B bench of the worker's patches uses it).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STEPS=${1:-100,200,400}
WINDOW=${WINDOW_SECS:-15}
cd "$ROOT"
cargo build -q --release -p coordinator -p loadgen -p media-node
NODE_CPU=(); REST_CPU=()
if [[ "${PIN:-0}" = 1 ]]; then
  last=$(( $(nproc) - 1 ))
  NODE_CPU=(taskset -c "$last"); REST_CPU=(taskset -c "0-$(( last > 0 ? last - 1 : 0 ))")
fi

SECRET="bench-secret-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export THRONG_TOKEN_SECRET=$SECRET THRONG_API_KEY=$SECRET-api THRONG_ADMIN_KEY=$SECRET-admin
REDIS_PORT=6397; GRPC=127.0.0.1:50161; LISTEN=127.0.0.1:8191
PIDS=()
# Stop newest first (loadgen, coordinator, media node, Redis last), each waited for.
stop_all() { for ((i=${#PIDS[@]}-1; i>=0; i--)); do kill -TERM "${PIDS[$i]}" 2>/dev/null || true; wait "${PIDS[$i]}" 2>/dev/null || true; done; PIDS=(); }
trap stop_all EXIT
"${REST_CPU[@]}" redis-server --port $REDIS_PORT --bind 127.0.0.1 --save "" --appendonly no >/dev/null & PIDS+=($!)
sleep 0.5
THRONG_NODE_ID=bench-node THRONG_WORKERS=1 THRONG_RTC_LISTEN_IP=127.0.0.1 THRONG_RTC_BASE_PORT=42000 \
THRONG_GRPC_LISTEN=$GRPC THRONG_HTTP_LISTEN=127.0.0.1:9192 THRONG_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/ \
RUST_LOG=warn "${NODE_CPU[@]}" "${NODE_BIN:-target/release/media-node}" >/dev/null & NODE=$!; PIDS+=($NODE)
sleep 1
THRONG_LISTEN=$LISTEN THRONG_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/ THRONG_WORKER_CAPACITY=200000 \
RUST_LOG=warn "${REST_CPU[@]}" target/release/coordinator >/dev/null & PIDS+=($!)
for _ in $(seq 1 50); do curl -fsS "http://$LISTEN/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
sleep 1.5
echo "commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, steps $STEPS receivers, ${WINDOW}s windows, node ${NODE_BIN:-target/release/media-node}${NODE_CPU:+ pinned to CPU ${NODE_CPU[2]}}"
"${REST_CPU[@]}" target/release/loadgen capacity --url "ws://$LISTEN/ws" --node-pid "$NODE" \
  --steps "$STEPS" --window-secs "$WINDOW" --json /tmp/throng-capacity-cluster.json
stop_all
[ "${DIRECT:-1}" = 0 ] && exit 0
sleep 1
target/release/loadgen direct --port 42100 --steps "$STEPS" --window-secs "$WINDOW" --json /tmp/throng-capacity-direct.json
python3 - <<'PY'
import json
c = json.load(open('/tmp/throng-capacity-cluster.json'))
d = json.load(open('/tmp/throng-capacity-direct.json'))
print("consumers  cluster%  direct%  direct/cluster CPU (>= 0.95 means our layers cost <= 5 %)")
for a, b in zip(c["steps"], d["steps"]):
    r = b["workerCpuPct"] / a["workerCpuPct"] if a["workerCpuPct"] else float("nan")
    print(f'{a["consumers"]:>9} {a["workerCpuPct"]:>9.1f} {b["workerCpuPct"]:>8.1f} {r:>8.3f}')
if c["consumersAt85Pct"] and d["consumersAt85Pct"]:
    print(f'consumers at 85 %: cluster {c["consumersAt85Pct"]:.0f}, direct {d["consumersAt85Pct"]:.0f}, ratio {c["consumersAt85Pct"]/d["consumersAt85Pct"]:.3f}')
PY
