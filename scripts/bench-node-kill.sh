#!/usr/bin/env bash
# Media node SIGKILL mid-call (docs/reliability.md, BENCHMARKS.md): Redis, two
# media nodes of 2 workers and one coordinator on 127.0.0.1 (release builds),
# ROOMS rooms of PER participants that all send real audio and video (str0m,
# DTLS-SRTP) and receive everyone else; `loadgen node-kill` SIGKILLs the node
# hosting the most participants and measures, per participant, the longest
# time without media from any sender, and when the coordinator told them.
# Repeated RUNS times (a fresh cluster each).
#   scripts/bench-node-kill.sh [ROOMS] [PER] [RUNS]    (default 10 x 4, 3 runs)
#   BIN=target/debug scripts/bench-node-kill.sh        (the test build's binaries)
#   LOGS=DIR scripts/bench-node-kill.sh                (the coordinator's debug log per run in DIR)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOMS=${1:-10}; PER=${2:-4}; RUNS=${3:-3}
cd "$ROOT"
BIN=${BIN:-}
if [[ -z "$BIN" ]]; then cargo build -q --release -p coordinator -p loadgen -p media-node; BIN=target/release; fi

SECRET="bench-secret-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export THRONG_TOKEN_SECRET=$SECRET THRONG_API_KEY=$SECRET-api THRONG_ADMIN_KEY=$SECRET-admin
REDIS_PORT=6398; LISTEN=127.0.0.1:8192
PIDS=()
stop_all() { for ((i=${#PIDS[@]}-1; i>=0; i--)); do kill -TERM "${PIDS[$i]}" 2>/dev/null || true; wait "${PIDS[$i]}" 2>/dev/null || true; done; PIDS=(); }
trap stop_all EXIT
echo "commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $ROOMS rooms of $PER"
for run in $(seq 1 "$RUNS"); do
  redis-server --port $REDIS_PORT --bind 127.0.0.1 --save "" --appendonly no >/dev/null & PIDS+=($!)
  for _ in $(seq 1 50); do redis-cli -p $REDIS_PORT ping >/dev/null 2>&1 && break; sleep 0.1; done
  NODES=""
  for n in 1 2; do
    THRONG_NODE_ID=kill-node-$n THRONG_WORKERS=2 THRONG_DRAIN_GRACE_SECS=1 THRONG_RTC_LISTEN_IP=127.0.0.1 \
    THRONG_RTC_BASE_PORT=$((41200 + n * 10)) THRONG_GRPC_LISTEN=127.0.0.1:$((50170 + n)) \
    THRONG_HTTP_LISTEN=127.0.0.1:$((9200 + n)) THRONG_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/ \
    RUST_LOG=warn $BIN/media-node >/dev/null 2>&1 & PIDS+=($!); disown $! 2>/dev/null || true
    NODES="$NODES${NODES:+,}kill-node-$n=$!"
  done
  sleep 1
  LOG=/dev/null; LEVEL=warn
  if [[ -n "${LOGS:-}" ]]; then mkdir -p "$LOGS"; LOG=$LOGS/coordinator-$run.log; LEVEL=coordinator=debug,warn; fi
  THRONG_LISTEN=$LISTEN THRONG_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/ \
  RUST_LOG=$LEVEL $BIN/coordinator >"$LOG" 2>&1 & PIDS+=($!)
  for _ in $(seq 1 50); do curl -fsS "http://$LISTEN/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  sleep 1.5
  echo "--- run $run"
  $BIN/loadgen node-kill --url "ws://$LISTEN/ws" \
    --nodes "$NODES" --rooms "$ROOMS" --participants "$PER" --watch-secs 10 2>&1 | grep -v '^kill-' || echo "(node-kill reported a failure)"
  stop_all
done
