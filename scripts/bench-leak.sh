#!/usr/bin/env bash
# Leak check (docs/reliability.md, BENCHMARKS.md): a real single-machine
# cluster (Redis, one media node, one coordinator, release builds) and
# `loadgen churn`: CYCLES rooms one after the other, PER participants each
# joining (half send real audio + video, half consume them all), then all
# leaving: CYCLES x PER join/leave cycles. Before (after one warm-up cycle)
# and after: the nodes' routers, transports, producers, consumers and reserved
# units, Redis keys, the coordinator's open sessions and participants, open
# file descriptors and resident memory of both services.
#   scripts/bench-leak.sh [CYCLES] [PER]     (default 50 x 20 = 1000)
#   BIN=target/debug scripts/bench-leak.sh   (the test build's binaries, no release build)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CYCLES=${1:-50}; PER=${2:-20}
cd "$ROOT"
BIN=${BIN:-}
if [[ -z "$BIN" ]]; then cargo build -q --release -p coordinator -p loadgen -p media-node; BIN=target/release; fi

SECRET="bench-secret-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export THRONG_TOKEN_SECRET=$SECRET THRONG_API_KEY=$SECRET-api THRONG_ADMIN_KEY=$SECRET-admin
REDIS_PORT=6397; GRPC=127.0.0.1:50161; LISTEN=127.0.0.1:8191; NODE_HTTP=127.0.0.1:9196
PIDS=()
stop_all() { for ((i=${#PIDS[@]}-1; i>=0; i--)); do kill -TERM "${PIDS[$i]}" 2>/dev/null || true; wait "${PIDS[$i]}" 2>/dev/null || true; done; PIDS=(); }
trap stop_all EXIT
redis-server --port $REDIS_PORT --bind 127.0.0.1 --save "" --appendonly no >/dev/null & PIDS+=($!)
for _ in $(seq 1 50); do redis-cli -p $REDIS_PORT ping >/dev/null 2>&1 && break; sleep 0.1; done
THRONG_NODE_ID=leak-node THRONG_WORKERS=2 THRONG_DRAIN_GRACE_SECS=1 THRONG_RTC_LISTEN_IP=127.0.0.1 THRONG_RTC_BASE_PORT=41100 \
THRONG_GRPC_LISTEN=$GRPC THRONG_HTTP_LISTEN=$NODE_HTTP THRONG_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/ \
RUST_LOG=warn $BIN/media-node >/dev/null 2>&1 & NODE=$!; PIDS+=($NODE)
sleep 1
THRONG_LISTEN=$LISTEN THRONG_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/ \
RUST_LOG=warn $BIN/coordinator >/dev/null 2>&1 & COORD=$!; PIDS+=($COORD)
for _ in $(seq 1 50); do curl -fsS "http://$LISTEN/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
sleep 1.5
echo "commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores"

fds() { ls "/proc/$1/fd" | wc -l; }
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
metric() { curl -fsS -H "x-admin-key: $THRONG_ADMIN_KEY" "http://$LISTEN/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
snapshot() {
  echo "$1: node fds $(fds $NODE), rss $(( $(rss $NODE) / 1024 )) MiB; coordinator fds $(fds $COORD), rss $(( $(rss $COORD) / 1024 )) MiB;" \
       "redis keys $(redis-cli -p $REDIS_PORT dbsize); sessions $(metric throng_websocket_sessions), participants $(metric throng_participants), rooms $(metric throng_rooms)"
}
churn() {
  $BIN/loadgen churn --url "ws://$LISTEN/ws" \
    --cycles "$1" --participants "$2"
}
# Warm-up: allocators, connection pools and the worker's first router settle.
churn 1 "$PER" >/dev/null || true
# A closed room's owner claim is not deleted but expires (CLAIM_TTL, 15 s).
claims() { redis-cli -p $REDIS_PORT --scan --pattern 'throng:room-owner:*' | wc -l; }
settle_claims() { local w=0; while [[ $(claims) -gt 0 && $w -lt 30 ]]; do sleep 1; w=$((w + 1)); done; echo $w; }
settle_claims >/dev/null
snapshot before
redis-cli -p $REDIS_PORT --scan | sort > "${TMPDIR:-/tmp}/leak-keys-before.$$"
B_NODE_FDS=$(fds $NODE); B_COORD_FDS=$(fds $COORD); B_NODE_RSS=$(rss $NODE); B_COORD_RSS=$(rss $COORD); B_KEYS=$(redis-cli -p $REDIS_PORT dbsize)
t0=$(date +%s)
churn "$CYCLES" "$PER" || echo "(loadgen churn reported errors: see above)"
t1=$(date +%s)
sleep 3
snapshot after
waited=$(settle_claims)
echo "room owner claims expired ${waited} s after the last leave + 3 s"
snapshot settled
echo "$((CYCLES * PER)) join/leave cycles in $((t1 - t0)) s"
redis-cli -p $REDIS_PORT --scan | sort > "${TMPDIR:-/tmp}/leak-keys-after.$$"
echo "redis keys added: $(comm -13 "${TMPDIR:-/tmp}/leak-keys-before.$$" "${TMPDIR:-/tmp}/leak-keys-after.$$" | tr '\n' ' ')(none if empty); removed: $(comm -23 "${TMPDIR:-/tmp}/leak-keys-before.$$" "${TMPDIR:-/tmp}/leak-keys-after.$$" | tr '\n' ' ')"
rm -f "${TMPDIR:-/tmp}/leak-keys-before.$$" "${TMPDIR:-/tmp}/leak-keys-after.$$"
echo "differences: node fds $(( $(fds $NODE) - B_NODE_FDS )), coordinator fds $(( $(fds $COORD) - B_COORD_FDS )), redis keys $(( $(redis-cli -p $REDIS_PORT dbsize) - B_KEYS ))," \
     "node rss $(( ($(rss $NODE) - B_NODE_RSS) / 1024 )) MiB, coordinator rss $(( ($(rss $COORD) - B_COORD_RSS) / 1024 )) MiB"
