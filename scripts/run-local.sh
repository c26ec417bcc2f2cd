#!/usr/bin/env bash
# Starts the single-machine cluster from the workspace's build output and
# prints the URL to open and a ready-to-use join token. Ctrl-C / SIGTERM
# stops everything (each part drains on SIGTERM).
#
# Parts: Redis (when redis-server is installed; otherwise the coordinator's
# in-memory registry polls the node), one media node (one mediasoup worker per
# core, each on its own UDP+TCP port from 40000), one coordinator on :8080.
# Rooms are open to anyone who can reach the URL (THRONG_OPEN_JOIN=true);
# set it to false to require join links. Development secrets are generated per run unless THRONG_TOKEN_SECRET,
# THRONG_API_KEY and THRONG_ADMIN_KEY are set.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN="$ROOT/${THRONG_BIN:-target/debug}"

dev_secret() { head -c 24 /dev/urandom | base64 | tr -d '/+=' ; }
export THRONG_TOKEN_SECRET=${THRONG_TOKEN_SECRET:-dev-$(dev_secret)-$(dev_secret)}
export THRONG_API_KEY=${THRONG_API_KEY:-dev-$(dev_secret)-$(dev_secret)}
export THRONG_ADMIN_KEY=${THRONG_ADMIN_KEY:-dev-$(dev_secret)-$(dev_secret)}
export RUST_LOG=${RUST_LOG:-info}
LISTEN=${THRONG_LISTEN:-127.0.0.1:8080}
GRPC=${THRONG_NODE_GRPC:-127.0.0.1:50051}

PIDS=()
cleanup() {
  # Coordinator first, then the media node (it drains and removes its report), Redis last.
  for ((i=${#PIDS[@]}-1; i>=0; i--)); do
    kill -TERM "${PIDS[$i]}" 2>/dev/null || true
    wait "${PIDS[$i]}" 2>/dev/null || true
  done
}
trap cleanup EXIT INT TERM

if command -v redis-server >/dev/null; then
  REDIS_PORT=${THRONG_REDIS_PORT:-6399}
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
  PIDS+=($!)
  export THRONG_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"
  for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null && break; sleep 0.1; done
fi

THRONG_NODE_ID=${THRONG_NODE_ID:-local-node} \
THRONG_RTC_LISTEN_IP=${THRONG_RTC_LISTEN_IP:-127.0.0.1} \
THRONG_RTC_BASE_PORT=${THRONG_RTC_BASE_PORT:-40000} \
THRONG_GRPC_LISTEN="$GRPC" \
THRONG_HTTP_LISTEN=${THRONG_NODE_HTTP:-127.0.0.1:9100} \
  "$BIN/media-node" &
PIDS+=($!)

THRONG_LISTEN="$LISTEN" THRONG_MEDIA_NODES="$GRPC" \
THRONG_WEB_ROOT=${THRONG_WEB_ROOT:-$ROOT/client-web/dist} \
THRONG_OPEN_JOIN=${THRONG_OPEN_JOIN:-true} \
  "$BIN/coordinator" &
PIDS+=($!)

for _ in $(seq 1 100); do
  if curl -fsS "http://$LISTEN/healthz" >/dev/null 2>&1; then
    TOKEN=$("$BIN/coordinator" token --room demo --identity "guest-$RANDOM")
    cat <<INFO

Throng is running: http://$LISTEN/   (open it, pick a room and a name, join)
  registry:    ${THRONG_REDIS_URL:-in-memory (no redis-server installed)}
  join token:  room "demo" -> $TOKEN
  join link:   http://$LISTEN/?room=demo&token=$TOKEN
  more tokens: THRONG_TOKEN_SECRET=$THRONG_TOKEN_SECRET $BIN/coordinator token --room demo --identity NAME
               or POST http://$LISTEN/api/token with header x-api-key: $THRONG_API_KEY
  admin API:   curl -H 'x-admin-key: $THRONG_ADMIN_KEY' http://$LISTEN/admin/nodes
(Ctrl-C stops it)
INFO
    wait -n "${PIDS[@]}"
    exit $?
  fi
  sleep 0.1
done
echo "the cluster did not become healthy within 10 s" >&2
exit 1
