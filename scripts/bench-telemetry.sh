#!/usr/bin/env bash
# Telemetry overhead (BENCHMARKS.md): the 1000-join surge into 50 rooms with
# span export off and on, alternating in one run. "on" means both services
# export every span over OTLP/gRPC to `loadgen otlp-sink` (a real receiver on
# loopback); "off" means OTEL_EXPORTER_OTLP_ENDPOINT unset (no OpenTelemetry
# layer at all). Metrics are always on (they cannot be turned off): their cost
# is inside both figures. Per run: the surge's time-to-admitted quantiles,
# coordinator and media-node CPU for the surge, and the spans received.
#   scripts/bench-telemetry.sh [JOINS] [ROUNDS]     (default 1000, 3; MEDIA=0)
# ADMIN_VIEW=1 first runs one more surge ("view", export off, not one of the
# rounds) with the live view /admin open in headless Chromium
# (client-web/bench/admin-view.mjs): what an update weighs and costs to render
# at that size.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
JOINS=${1:-1000}
ROUNDS=${2:-3}
cd "$ROOT"
cargo build -q --release -p coordinator -p loadgen -p media-node

SECRET="bench-secret-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export THRONG_TOKEN_SECRET=$SECRET THRONG_API_KEY=$SECRET-api THRONG_ADMIN_KEY=$SECRET-admin
REDIS_PORT=6399; GRPC=127.0.0.1:50161; LISTEN=127.0.0.1:8191; OTLP=127.0.0.1:4399
PIDS=()
stop_all() { for ((i=${#PIDS[@]}-1; i>=0; i--)); do kill -TERM "${PIDS[$i]}" 2>/dev/null || true; wait "${PIDS[$i]}" 2>/dev/null || true; done; PIDS=(); }
trap stop_all EXIT
redis-server --port $REDIS_PORT --bind 127.0.0.1 --save "" --appendonly no >/dev/null & REDIS=$!
for _ in $(seq 1 50); do redis-cli -p $REDIS_PORT ping >/dev/null 2>&1 && break; sleep 0.1; done
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
echo "commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $JOINS joins into 50 rooms, MEDIA=${MEDIA:-0}"
run() {  # $1 = off | on
  local otel=()
  PIDS=()
  if [ "$1" = on ]; then
    target/release/loadgen otlp-sink --listen $OTLP > /tmp/throng-otlp-sink.out 2>/dev/null & SINK=$!; PIDS+=($SINK)
    sleep 0.3
    otel=(OTEL_EXPORTER_OTLP_ENDPOINT=http://$OTLP)
  fi
  redis-cli -p $REDIS_PORT flushall >/dev/null
  env "${otel[@]}" THRONG_NODE_ID=bench-node THRONG_RTC_LISTEN_IP=127.0.0.1 THRONG_RTC_BASE_PORT=41100 \
    THRONG_GRPC_LISTEN=$GRPC THRONG_HTTP_LISTEN=127.0.0.1:9192 THRONG_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/ \
    THRONG_DRAIN_GRACE_SECS=1 RUST_LOG=warn target/release/media-node >/dev/null 2>&1 & NODE=$!; PIDS+=($NODE)
  sleep 1
  env "${otel[@]}" THRONG_LISTEN=$LISTEN THRONG_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/ THRONG_WORKER_CAPACITY=30000 \
    THRONG_ROOM_CAP=$((JOINS + 1)) THRONG_DRAIN_GRACE_SECS=1 RUST_LOG=warn target/release/coordinator >/dev/null & COORD=$!; PIDS+=($COORD)
  for _ in $(seq 1 50); do curl -fsS "http://$LISTEN/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  local view=""
  if [ "$1" = view ]; then
    (cd client-web && URL=http://$LISTEN ADMIN_KEY=$THRONG_ADMIN_KEY SECONDS=40 node bench/admin-view.mjs) > /tmp/throng-admin-view.out 2>&1 & view=$!
  fi
  sleep 1.5
  local c0 n0; c0=$(ticks $COORD); n0=$(ticks $NODE)
  local out; out=$(target/release/loadgen surge --url "ws://$LISTEN/ws" --joins "$JOINS" --rooms 50 \
    --media "${MEDIA:-0}" --timeout-secs 120 --hold-secs 2 2>/dev/null || true)
  local c1 n1; c1=$(ticks $COORD); n1=$(ticks $NODE)
  [ -n "$view" ] && { wait $view || true; }
  stop_all
  local spans="-"
  [ "$1" = on ] && spans=$(sed -n 's/^otlp-sink: \([0-9]*\) spans.*/\1/p' /tmp/throng-otlp-sink.out)
  echo "$1  admitted $(echo "$out" | awk '/^admitted/ {print $2}')  time to admitted $(echo "$out" | sed -n 's/^time to admitted *//p')  coordinator CPU $(( (c1 - c0) * 10 )) ms  node CPU $(( (n1 - n0) * 10 )) ms  spans $spans"
}
[ "${ADMIN_VIEW:-0}" = 1 ] && { run view; cat /tmp/throng-admin-view.out; }
for r in $(seq 1 "$ROUNDS"); do run off; run on; done
kill -TERM $REDIS; wait $REDIS 2>/dev/null || true
