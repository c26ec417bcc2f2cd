#!/usr/bin/env bash
# Starts the single-machine cluster from the workspace's build output and
# prints the URL to open. Stops everything on Ctrl-C / SIGTERM.
#
# Today this is one media node (one mediasoup worker per core, each with its
# WebRtcServer port) and its status page; the coordinator joins it as it lands.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN="$ROOT/target/debug"

HTTP_PORT=${THRONG_HTTP_PORT:-9100}
export THRONG_NODE_ID=${THRONG_NODE_ID:-local-node}
export THRONG_RTC_LISTEN_IP=${THRONG_RTC_LISTEN_IP:-127.0.0.1}
export THRONG_RTC_BASE_PORT=${THRONG_RTC_BASE_PORT:-40000}
export THRONG_HTTP_LISTEN=${THRONG_HTTP_LISTEN:-127.0.0.1:$HTTP_PORT}
export RUST_LOG=${RUST_LOG:-info}

"$BIN/media-node" &
NODE=$!
trap 'kill -TERM $NODE 2>/dev/null; wait $NODE' INT TERM

for _ in $(seq 1 100); do
  if curl -fsS "http://$THRONG_HTTP_LISTEN/healthz" >/dev/null 2>&1; then
    echo
    echo "Throng is running: http://$THRONG_HTTP_LISTEN/status"
    echo "(Ctrl-C stops it)"
    wait $NODE
    exit $?
  fi
  kill -0 $NODE 2>/dev/null || { wait $NODE; exit $?; }
  sleep 0.1
done
echo "media node did not become healthy within 10 s" >&2
kill -TERM $NODE
exit 1
