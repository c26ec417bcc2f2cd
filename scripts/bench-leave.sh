#!/usr/bin/env bash
# A leave surge on one media node (BENCHMARKS.md, "Leave surge"): `loadgen
# leave-surge` builds PARTICIPANTS participants on one router over the node's
# own gRPC API (two transports, an audio producer and CONSUMERS consumers
# each), then all leave at once; it prints how long the removals took and when
# the node counted zero. NODE_BINS (space-separated) runs several node builds
# in alternation, ROUNDS times each, to compare them in one run:
#   NODE_BINS="/tmp/media-node-old target/release/media-node" ROUNDS=5 scripts/bench-leave.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PARTICIPANTS=${PARTICIPANTS:-500}
CONSUMERS=${CONSUMERS:-10}
ROUNDS=${ROUNDS:-3}
PROFILE=${PROFILE:-release}
if [ "$PROFILE" = release ]; then
  cargo build -q --release -p loadgen -p media-node
else
  cargo build -q -p loadgen -p media-node
fi
NODE_BINS=${NODE_BINS:-target/$PROFILE/media-node}
GRPC=127.0.0.1:50171
NODE=""
stop_node() { [ -n "$NODE" ] && { kill -TERM "$NODE" 2>/dev/null || true; wait "$NODE" 2>/dev/null || true; }; NODE=""; }
trap stop_node EXIT
echo "commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $PARTICIPANTS participants x $CONSUMERS consumers, $ROUNDS rounds"
for round in $(seq 1 "$ROUNDS"); do
  for bin in $NODE_BINS; do
    THRONG_NODE_ID=leave-bench THRONG_WORKERS=1 THRONG_RTC_LISTEN_IP=127.0.0.1 THRONG_RTC_BASE_PORT=42300 \
    THRONG_GRPC_LISTEN=$GRPC THRONG_HTTP_LISTEN=127.0.0.1:9193 THRONG_DRAIN_GRACE_SECS=1 \
    RUST_LOG=warn "$bin" >/dev/null & NODE=$!
    for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/50171) 2>/dev/null && break; sleep 0.1; done
    echo "round $round, node $bin"
    "target/$PROFILE/loadgen" leave-surge --node "$GRPC" --participants "$PARTICIPANTS" --consumers "$CONSUMERS" | sed 's/^/  /'
    stop_node
  done
done
