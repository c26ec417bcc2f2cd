#!/usr/bin/env bash
# The worker's hot-path patches, A/B in one run (BENCHMARKS.md, section 2):
# builds one media-node per worker variant, then alternates them through the
# capacity set-up (scripts/bench-capacity.sh: Redis, one media node with ONE
# worker, a coordinator, `loadgen capacity` with one VP8+Opus sender and str0m
# receivers each consuming both streams) and reports, per variant and step, the
# worker's CPU per forwarded packet (the worker thread's user+system time over
# the packets the receivers got in the same window) and the loss.
#
#   scripts/bench-worker-ab.sh        (as root: the builds need the package
#                                      registries; the runs then go into a
#                                      loopback-only network namespace of their own)
#
# VARIANTS   worker variants, space separated (default: "none all" plus each
#            patch of third_party/mediasoup-patches alone): none = upstream
#            mediasoup with the offline shims only, all = every patch, NAME =
#            that patch alone, NAME,NAME = those, none-again = the A/A control:
#            upstream's binary once more as if it were a variant, so the run
#            measures its own run-to-run spread (what a patch must beat);
#            list it half the list away from none, so it runs as far from none
#            as the farthest variant and its spread is not flattered.
# ROUNDS     alternations (default 5); the order of the variants turns every
#            round so none always runs first or last.
# STEPS      receivers per step (default 100,200 = 200 and 400 consumers, the
#            range where the receivers keep up on 2 cores).
# WINDOW_SECS  measured seconds per step (default 15).
# PROFILE=1  also a perf profile of each variant (scripts/profile-worker.sh 200).
# PIN=0      let the scheduler place the worker (default: the media node on the
#            last CPU, the receivers and the rest on the others; unpinned, the
#            same build measured 15-30 % apart from one run to the next).
# BUILD=0    reuse the binaries already in target/worker-ab.
#
# Each variant is prepared in .prepared and built in the worker's one meson
# directory, so a switch recompiles only what the patches touch (a minute or
# two, not the 8 of a cold worker); .prepared is left at "all" afterwards.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=target/worker-ab
mkdir -p "$OUT/runs"
ROUNDS=${ROUNDS:-5}
STEPS=${STEPS:-100,200}
WINDOW=${WINDOW_SECS:-15}
if [[ -z "${VARIANTS:-}" ]]; then
  VARIANTS="none all"
  for f in third_party/mediasoup-patches/*.patch; do
    [[ -f "$f" ]] && VARIANTS="$VARIANTS $(basename "$f" .patch)"
  done
fi
read -ra VS <<<"$VARIANTS"

log() { printf 'bench-worker-ab: %s\n' "$*" >&2; }

restore() { scripts/prepare-mediasoup.sh >/dev/null; }
# none-again is upstream's binary under another name (the A/A control).
binary() { if [[ "$1" = none-again ]]; then echo "$OUT/media-node-none"; else echo "$OUT/media-node-$1"; fi; }
if printf '%s\n' "${VS[@]}" | grep -qx none-again && ! printf '%s\n' "${VS[@]}" | grep -qx none; then
  echo "bench-worker-ab: none-again is the A/A control of none; list none too" >&2
  exit 2
fi
if [[ "${BUILD:-1}" != 0 ]]; then
  trap restore EXIT
  cargo build -q --release -p coordinator -p loadgen
  # "all" last: the tree is then already what it is left at.
  for v in $(printf '%s\n' "${VS[@]}" | grep -vx -e all -e none-again) $(printf '%s\n' "${VS[@]}" | grep -x all); do
    log "building the worker variant $v"
    start=$(date +%s)
    THRONG_MEDIASOUP_PATCHES=$v scripts/prepare-mediasoup.sh
    cargo build -q --release -p media-node
    cp target/release/media-node "$OUT/media-node-$v"
    log "variant $v built in $(( $(date +%s) - start )) s"
  done
  restore
  trap - EXIT
fi

# The runs: inside a network namespace with only loopback, so nothing leaves.
if [[ -z "${THRONG_AB_ISOLATED:-}" ]]; then
  exec unshare --net -- env THRONG_AB_ISOLATED=1 BUILD=0 VARIANTS="${VS[*]}" ROUNDS="$ROUNDS" STEPS="$STEPS" \
    WINDOW_SECS="$WINDOW" PROFILE="${PROFILE:-0}" PIN="${PIN:-1}" sh -c 'ip link set lo up && exec "$0"' "$0"
fi

stamp=$(date -u +%Y%m%dT%H%M)
echo "commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, variants ${VS[*]}, $ROUNDS rounds, steps $STEPS receivers, ${WINDOW}s windows, pinned: ${PIN:-1}"
for ((r = 0; r < ROUNDS; r++)); do
  n=${#VS[@]}
  for ((i = 0; i < n; i++)); do
    v=${VS[$(( (i + r) % n ))]}
    log "round $((r + 1))/$ROUNDS: $v"
    NODE_BIN="$(binary "$v")" DIRECT=0 PIN="${PIN:-1}" WINDOW_SECS=$WINDOW scripts/bench-capacity.sh "$STEPS" >"$OUT/runs/$stamp-$v-$r.txt" 2>&1 \
      || { tail -20 "$OUT/runs/$stamp-$v-$r.txt" >&2; exit 1; }
    cp /tmp/throng-capacity-cluster.json "$OUT/runs/$stamp-$v-$r.json"
  done
done

if [[ "${PROFILE:-0}" = 1 ]]; then
  for v in "${VS[@]}"; do
    [[ "$v" = none-again ]] && continue
    NODE_BIN="$(binary "$v")" scripts/profile-worker.sh 200 >"$OUT/runs/$stamp-$v-profile.txt" 2>&1 || true
    echo "--- profile of $v (400 consumers): $OUT/runs/$stamp-$v-profile.txt"
    grep -E '^ +[0-9]' "$OUT/runs/$stamp-$v-profile.txt" | head -15 || true
  done
fi

python3 - "$OUT/runs" "$stamp" "${VS[@]}" <<'PY'
import glob, json, os, re, statistics, sys
runs, stamp, variants = sys.argv[1], sys.argv[2], sys.argv[3:]
res = {}  # variant -> consumers -> [(us per packet, cpu %, loss %, round)]
for v in variants:
    # this variant's rounds only ("none-*" would also take none-again's)
    pat = re.compile(rf"{re.escape(stamp)}-{re.escape(v)}-(\d+)\.json")
    for f in sorted(glob.glob(f"{runs}/{stamp}-*.json")):
        m = pat.fullmatch(os.path.basename(f))
        if not m:
            continue
        for s in json.load(open(f))["steps"]:
            us = s["workerCpuPct"] / 100 / s["packetsPerSec"] * 1e6 if s["packetsPerSec"] else float("nan")
            res.setdefault(v, {}).setdefault(s["consumers"], []).append((us, s["workerCpuPct"], s["lossPct"], m[1]))
base = res.get("none", {})
print("worker CPU per forwarded packet, microseconds: median of the rounds (each round's figures)")
print(f'{"variant":<28} {"consumers":>9} {"us/packet":>9} {"vs none":>8} {"cpu %":>6} {"max loss %":>10}  rounds')
for v in variants:
    for c, xs in sorted(res.get(v, {}).items()):
        med = statistics.median(x[0] for x in xs)
        b = statistics.median(x[0] for x in base[c]) if c in base else None
        ratio = f"{b / med:8.3f}" if b else "       -"
        print(f'{v:<28} {c:>9} {med:>9.2f} {ratio} {statistics.median(x[1] for x in xs):>6.1f} '
              f'{max(x[2] for x in xs):>10.2f}  {" ".join(f"{x[0]:.2f}" for x in xs)}')
print('"vs none" is upstream\'s CPU per packet over the variant\'s: 1.2 means 1.2x the packets, i.e. consumers, per core.')

# Paired: each round runs every variant once, back to back, so the ratio
# none/variant within a round cancels the machine's slow drift (the same binary
# measured 15-30 % apart from one run to the next). Geometric mean of the
# paired ratios with a bootstrap 95 % interval; a variant whose interval lies
# above 1 wins by more than the run-to-run spread, and none-again (the same
# binary as none) shows how wide that spread is.
import math, random
rng = random.Random(17)
def paired(v, c):
    # none's figure of the same round (missing when that round of none failed)
    nb = {x[3]: x[0] for x in base.get(c, [])}
    return [nb[x[3]] / x[0] for x in res[v][c]
            if x[3] in nb and not math.isnan(nb[x[3]]) and not math.isnan(x[0])]
if base:
    print()
    print("paired, round by round: none's CPU per packet over the variant's in the same round")
    print(f'{"variant":<38} {"consumers":>9} {"geomean":>8} {"95 % interval":>14} {"median":>7} {"wins":>6}  rounds')
    for v in variants:
        if v == "none":
            continue
        for c in sorted(res.get(v, {})):
            xs = paired(v, c)
            if len(xs) < 2:
                continue
            logs = [math.log(x) for x in xs]
            boots = sorted(math.exp(statistics.mean(rng.choices(logs, k=len(logs)))) for _ in range(4000))
            lo, hi = boots[int(0.025 * len(boots))], boots[int(0.975 * len(boots)) - 1]
            print(f'{v:<38} {c:>9} {math.exp(statistics.mean(logs)):>8.3f} {f"{lo:.3f}-{hi:.3f}":>14} '
                  f'{statistics.median(xs):>7.3f} {sum(x > 1 for x in xs):>3}/{len(xs):<2}  {" ".join(f"{x:.2f}" for x in xs)}')
PY
