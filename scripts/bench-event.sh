#!/usr/bin/env bash
# Event benchmark (BENCHMARKS.md, section 1, events): Redis, NODES media-node
# processes of one worker each (distinct ports: the event spans nodes as in a
# cluster), two coordinators, and `loadgen surge --event`: SPEAKERS senders
# with real media on stage, AUDIENCE audience members released over
# RELEASE seconds through both coordinators, MEDIA of them real WebRTC
# receivers. Worker capacity is set so that the audience (2 x 12 units each)
# fills the NODES workers to about 80 %: placement spreads it over all of
# them (the audience's consumers are signalling-only, no media flows to them).
# The stage reaches the nodes through the relay tree (PIPE_FANOUT nodes fed
# per node): the room's tree is read from the admin API during the run and
# summed up at the end (the origin's fan-out, the largest, the depth).
#   scripts/bench-event.sh [AUDIENCE]   (default 10000; SPEAKERS=2 MEDIA=20 RELEASE=10 NODES=4 PIPE_FANOUT=8)
# TREE=0 skips reading the tree (older coordinators have no /relays).
# BIN=DIR runs the coordinator, media-node and loadgen binaries in DIR (an
# A/B against another commit's build) instead of building target/release.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
AUDIENCE=${1:-10000}
SPEAKERS=${SPEAKERS:-2}; MEDIA=${MEDIA:-20}; RELEASE=${RELEASE:-10}; NODES=${NODES:-4}; PIPE_FANOUT=${PIPE_FANOUT:-8}
cd "$ROOT"
if [ -z "${BIN:-}" ]; then
  cargo build -q --release -p coordinator -p loadgen -p media-node
  BIN=target/release
fi
SECRET="event-secret-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export THRONG_TOKEN_SECRET=$SECRET THRONG_API_KEY=$SECRET-api THRONG_ADMIN_KEY=$SECRET-admin
REDIS_PORT=6397
PIDS=()
# A wrapper given as a binary (heaptrack, env) is signalled with its children.
stop_all() { for ((i=${#PIDS[@]}-1; i>=0; i--)); do pkill -TERM -P "${PIDS[$i]}" 2>/dev/null || true; kill -TERM "${PIDS[$i]}" 2>/dev/null || true; wait "${PIDS[$i]}" 2>/dev/null || true; done; PIDS=(); }
trap stop_all EXIT
redis-server --port $REDIS_PORT --bind 127.0.0.1 --save "" --appendonly no >/dev/null & PIDS+=($!)
sleep 0.5
for n in $(seq 1 "$NODES"); do
  THRONG_NODE_ID=event-node-$n THRONG_WORKERS=1 THRONG_RTC_LISTEN_IP=127.0.0.1 THRONG_RTC_BASE_PORT=$((42000 + n * 10)) \
  THRONG_GRPC_LISTEN=127.0.0.1:$((50200 + n)) THRONG_HTTP_LISTEN=127.0.0.1:$((9200 + n)) \
  THRONG_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/ RUST_LOG=warn "$BIN/media-node" >/dev/null 2>&1 & PIDS+=($!)
done
sleep 1
URLS=""; COORDS=()
for c in 1 2; do
  THRONG_LISTEN=127.0.0.1:$((8300 + c)) THRONG_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/ \
  THRONG_WORKER_CAPACITY=$(( (AUDIENCE * 24 * 5 / 4) / NODES + 100 )) THRONG_ROOM_CAP=$((AUDIENCE + SPEAKERS)) THRONG_QUEUE_MAX=$((AUDIENCE + 100)) \
  THRONG_RATE_IP_PER_SEC=100000 THRONG_RATE_IP_BURST=100000 THRONG_PIPE_FANOUT=$PIPE_FANOUT \
  RUST_LOG=warn "$BIN/coordinator" >/dev/null & PIDS+=($!); COORDS+=($!)
  URLS="$URLS${URLS:+,}ws://127.0.0.1:$((8300 + c))/ws"
done
for c in 1 2; do for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$((8300 + c))/healthz" >/dev/null 2>&1 && break; sleep 0.1; done; done
sleep 2
echo "binaries $BIN, commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $NODES nodes, 2 coordinators"
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
# CPU (user + system, ms) of each process over the run: who the 2 cores went to.
cpu_ms() { awk '{print ($14 + $15) * 10}' "/proc/$1/stat" 2>/dev/null || echo 0; }
declare -A CPU0; for p in "${PIDS[@]}"; do CPU0[$p]=$(cpu_ms "$p"); done
m0=$(( $(rss_kib "${COORDS[0]}") + $(rss_kib "${COORDS[1]}") ))
"$BIN/loadgen" surge --url "$URLS" --event --speakers "$SPEAKERS" --joins "$AUDIENCE" --media "$MEDIA" \
  --tiles 12 --release-secs "$RELEASE" --timeout-secs 300 --hold-secs 5 & LOAD=$!
peak=$m0
TREE=$(mktemp); tick=0
while kill -0 $LOAD 2>/dev/null; do
  m=$(( $(rss_kib "${COORDS[0]}") + $(rss_kib "${COORDS[1]}") )); [ "$m" -gt "$peak" ] && peak=$m
  # The relay tree, from whichever coordinator serves the room (every 5 s).
  if [ "${TREE:-1}" != 0 ] && [ $((tick % 10)) -eq 9 ]; then
    for c in 1 2; do
      curl -fsS -H "x-admin-key: $THRONG_ADMIN_KEY" "http://127.0.0.1:$((8300 + c))/admin/rooms/surge-0/relays" 2>/dev/null \
        | python3 -c 'import json,sys; r=json.load(sys.stdin)["relays"]; r and print(json.dumps(r))' > "$TREE.new" 2>/dev/null || true
      [ -s "$TREE.new" ] && mv "$TREE.new" "$TREE"
    done
  fi
  v=$(cpu_ms $LOAD); [ "$v" -gt 0 ] && lg=$v   # (the last sample before it exits)
  tick=$((tick + 1)); sleep 0.5
done
wait $LOAD || true
names=(redis); for n in $(seq 1 "$NODES"); do names+=("node-$n"); done; names+=(coordinator-1 coordinator-2)
line="CPU over the run (ms):"; i=0
for p in "${PIDS[@]}"; do line="$line ${names[$i]} $(( $(cpu_ms "$p") - ${CPU0[$p]} ))"; i=$((i + 1)); done
echo "$line loadgen ${lg:-0}"
echo "coordinators: RSS $((m0 / 1024)) MiB before, peak $((peak / 1024)) MiB with $AUDIENCE connected ($(( (peak - m0) / AUDIENCE )) KiB per participant)"
python3 - "$TREE" "$PIPE_FANOUT" <<'PY'
import json, sys
try:
    trees = json.load(open(sys.argv[1]))
except Exception:
    trees = {}
print(f"relay tree (fan-out {sys.argv[2]}): {len(trees)} producers")
for producer, feeds in sorted(trees.items()):
    fed = {}
    for node, parent in feeds.items():
        if parent is not None:
            fed[parent] = fed.get(parent, 0) + 1
    origin = next((n for n, p in feeds.items() if p is None), "?")
    def depth(n):
        d = 0
        while feeds.get(n) is not None and d <= len(feeds):
            n, d = feeds[n], d + 1
        return d
    print(f"  {producer[:8]}: {len(feeds)} nodes, origin {origin} feeds {fed.get(origin, 0)}, "
          f"largest fan-out {max(fed.values(), default=0)}, depth {max(depth(n) for n in feeds)}")
PY
rm -f "$TREE" "$TREE.new"
for n in $(seq 1 "$NODES"); do
  curl -fsS "http://127.0.0.1:$((9200 + n))/status" 2>/dev/null | head -c 300; echo
done
