#!/usr/bin/env bash
# Surge benchmark (BENCHMARKS.md, figure 1): a real single-machine cluster
# (Redis, one media node with one worker per core, one coordinator built in
# release mode) and `loadgen surge` releasing N joins at once, into 1 room and
# into 50 rooms. Each room has a presenter (str0m, audio + video) joined
# before the release; every participant then creates a receive transport and
# consumes it (signalling only), and MEDIA of them (default 10) do so with a
# real WebRTC endpoint until media arrives. Worker capacity is raised so that
# all participants fit on this one node, and the room cap to JOINS + 1 (the
# presenter).
#   scripts/bench-surge.sh [JOINS]     (default 1000; MEDIA=10; ROOMS="1 50" the phases; COORD_BIN=another coordinator build)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
JOINS=${1:-1000}
cd "$ROOT"
cargo build -q --release -p coordinator -p loadgen -p media-node

SECRET="bench-secret-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export THRONG_TOKEN_SECRET=$SECRET THRONG_API_KEY=$SECRET-api THRONG_ADMIN_KEY=$SECRET-admin
REDIS_PORT=6398; GRPC=127.0.0.1:50151; LISTEN=127.0.0.1:8181
PIDS=()
# Stop newest first (loadgen, coordinator, media node, Redis last), each waited for.
# A wrapper given as a binary (heaptrack, env) is signalled with its children.
stop_all() { for ((i=${#PIDS[@]}-1; i>=0; i--)); do pkill -TERM -P "${PIDS[$i]}" 2>/dev/null || true; kill -TERM "${PIDS[$i]}" 2>/dev/null || true; wait "${PIDS[$i]}" 2>/dev/null || true; done; PIDS=(); }
trap stop_all EXIT
redis-server --port $REDIS_PORT --bind 127.0.0.1 --save "" --appendonly no >/dev/null & PIDS+=($!)
sleep 0.5
THRONG_NODE_ID=bench-node THRONG_RTC_LISTEN_IP=127.0.0.1 THRONG_RTC_BASE_PORT=41000 \
THRONG_GRPC_LISTEN=$GRPC THRONG_HTTP_LISTEN=127.0.0.1:9191 THRONG_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/ \
RUST_LOG=warn target/release/media-node >/dev/null & PIDS+=($!)
sleep 1
THRONG_LISTEN=$LISTEN THRONG_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/ THRONG_WORKER_CAPACITY=30000 THRONG_ROOM_CAP=$((JOINS + 1)) \
RUST_LOG=warn "${COORD_BIN:-target/release/coordinator}" >/dev/null & COORD=$!; PIDS+=($COORD)
for _ in $(seq 1 50); do curl -fsS "http://$LISTEN/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
sleep 1.5   # the coordinator reads node reports every second
echo "commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores"
# Coordinator CPU (user+system ticks), resident memory, and Redis commands served.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$COORD/stat"; }
sys_ticks() { awk '{print $15}' "/proc/$COORD/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$COORD/status"; }
redis_calls() { redis-cli -p $REDIS_PORT info commandstats | awk -F'[=,]' '/^cmdstat_/ {n += $2} END {print n}'; }
for rooms in ${ROOMS:-1 50}; do
  c0=$(cpu_ticks); s0=$(sys_ticks); r0=$(redis_calls); m0=$(rss_kib)
  target/release/loadgen surge --url "ws://$LISTEN/ws" --joins "$JOINS" --rooms "$rooms" \
    --media "${MEDIA:-10}" --timeout-secs 120 --hold-secs 5 & LOAD=$!
  peak=$m0
  lg=0
  while kill -0 $LOAD 2>/dev/null; do
    m=$(rss_kib); [ "$m" -gt "$peak" ] && peak=$m
    lg=$(awk '{print $14 + $15}' "/proc/$LOAD/stat" 2>/dev/null || echo "$lg")
    sleep 0.25
  done
  wait $LOAD || true
  c1=$(cpu_ticks); s1=$(sys_ticks); r1=$(redis_calls)
  echo "coordinator: CPU $(( (c1 - c0) * 10 )) ms for the surge ($(( (s1 - s0) * 10 )) ms of it in the kernel), RSS $((m0 / 1024)) MiB before, peak $((peak / 1024)) MiB with $JOINS connected ($(( (peak - m0) / JOINS )) KiB per participant)"
  echo "loadgen: CPU $((lg * 10)) ms (its $JOINS clients, presenters and media participants share these cores)"
  echo "redis: $((r1 - r0)) commands for $JOINS joins (incl. heartbeats, reports, polling during the run): $(( (r1 - r0) / JOINS )) per join"
  sleep 3
done
