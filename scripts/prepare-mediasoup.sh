#!/usr/bin/env bash
# Prepares a copy of the mediasoup-sys crate whose C++ worker builds with no
# internet access (see README, "Building the mediasoup worker offline").
#
# mediasoup-sys's meson build downloads five subprojects. This script replaces
# each with a local folder filled from the package registries only:
#   libuv            <- sources vendored in the libuv-sys2 crate (crates.io)
#   openssl          <- Debian libssl-dev's static libcrypto.a / libssl.a
#   libsrtp3         <- Debian source package libsrtp2 (2.5.0) + our 3.x API layer
#   unordered_dense  <- our header on abseil's flat_hash_map/set (Debian libabsl-dev)
#   flatbuffers      <- Debian flatbuffers-compiler + libflatbuffers-dev (2.0.8)
# plus a local wheelhouse (PyPI) for the invoke/meson/ninja the build pip-installs,
# one source fix to mediasoup's DTLS BIO callback (see "DTLS BIO callback" below),
# and Throng's patches to the worker's hot path (third_party/mediasoup-patches).
#
# Output: .prepared/ at the repository root (git-ignored). Cargo.toml patches
# mediasoup-sys to .prepared/mediasoup-sys; .cargo/config.toml points the build
# at the wheelhouse and keeps meson from downloading or purging anything.
#
# Idempotent: a stamp records the inputs; when they are unchanged this exits at once.
# When they changed, the copy is prepared beside the old one and only files whose
# bytes differ are replaced: the rest keep their times, so the worker's build
# (ninja, by file times) recompiles what a changed patch touches, not everything.
#
# Other worker variants, for the A/B bench (scripts/bench-worker-ab.sh):
#   THRONG_MEDIASOUP_PATCHES=all (default) | none | NAME[,NAME...]
# says which of third_party/mediasoup-patches/NAME.patch to apply (none: upstream
# mediasoup with only the offline shims and the DTLS fix). A variant is prepared
# in the same place and built in the same meson directory: switching recompiles
# only what the patches touch. The next run without it goes back to "all".
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$ROOT/.prepared"
SHIMS="$ROOT/third_party/mediasoup-shims"
PATCHES_DIR="$ROOT/third_party/mediasoup-patches"
SELECTED=${THRONG_MEDIASOUP_PATCHES:-all}

MEDIASOUP_SYS_VERSION=0.24.0
LIBUV_SYS2_VERSION=1.53.1
LIBSRTP2_SOURCE=libsrtp2
LIBSRTP2_VERSION=2.5.0
FLATBUFFERS_VERSION=2.0.8
# What mediasoup-sys's build pip-installs (tasks.py pins meson and ninja).
WHEELS=(invoke==3.0.3 meson==1.12.0 ninja==1.13.2 pip==26.3 setuptools==84.2.1)
DEB_PACKAGES=(libssl-dev flatbuffers-compiler libflatbuffers-dev libabsl-dev)

log() { printf 'prepare-mediasoup: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

stamp_of_inputs() {
  {
    echo "$MEDIASOUP_SYS_VERSION $LIBUV_SYS2_VERSION $LIBSRTP2_VERSION $FLATBUFFERS_VERSION ${WHEELS[*]}"
    dpkg-query -W -f='${Package} ${Version}\n' "${DEB_PACKAGES[@]}" 2>/dev/null || true
    cat "${BASH_SOURCE[0]}"
    (cd "$SHIMS" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
    echo "patches: $SELECTED"
    (cd "$PATCHES_DIR" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum)
  } | sha256sum | cut -d' ' -f1
}

STAMP=$(stamp_of_inputs)
if [[ -f "$OUT/stamp" && "$(cat "$OUT/stamp")" == "$STAMP" && -d "$OUT/mediasoup-sys" ]]; then
  exit 0
fi

for pkg in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
    || die "Debian package $pkg is missing (scripts/install-deps.sh installs it)"
done
[[ "$(flatc --version)" == "flatc version $FLATBUFFERS_VERSION" ]] \
  || die "flatc $FLATBUFFERS_VERSION expected, found: $(flatc --version)"

# Which patches, in file-name order.
PATCHES=()
case "$SELECTED" in
  all) for f in "$PATCHES_DIR"/*.patch; do [[ -f "$f" ]] && PATCHES+=("$f"); done ;;
  none) ;;
  *)
    IFS=, read -ra names <<<"$SELECTED"
    for name in "${names[@]}"; do
      [[ -f "$PATCHES_DIR/$name.patch" ]] || die "THRONG_MEDIASOUP_PATCHES names $name, but $PATCHES_DIR/$name.patch does not exist"
      PATCHES+=("$PATCHES_DIR/$name.patch")
    done ;;
esac

log "preparing mediasoup-sys $MEDIASOUP_SYS_VERSION in $OUT (patches: $SELECTED)"
FINAL=$OUT
OUT="$FINAL.staging"
rm -rf "$OUT"
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# --- crates.io: mediasoup-sys and libuv-sys2, through cargo's own cache ------
CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
mkdir -p "$WORK/fetch/src"
cat >"$WORK/fetch/Cargo.toml" <<EOF
[package]
name = "throng-fetch-build-inputs"
version = "0.0.0"
edition = "2021"
publish = false
[lib]
path = "src/lib.rs"
[dependencies]
mediasoup-sys = "=$MEDIASOUP_SYS_VERSION"
libuv-sys2 = "=$LIBUV_SYS2_VERSION"
EOF
: >"$WORK/fetch/src/lib.rs"
cargo fetch --quiet --manifest-path "$WORK/fetch/Cargo.toml"

crate_file() {
  local f
  f=$(find "$CARGO_HOME/registry/cache" -name "$1-$2.crate" -print -quit)
  [[ -n "$f" ]] || die "crate $1 $2 not found in $CARGO_HOME/registry/cache after cargo fetch"
  echo "$f"
}
tar -xzf "$(crate_file mediasoup-sys "$MEDIASOUP_SYS_VERSION")" -C "$OUT"
mv "$OUT/mediasoup-sys-$MEDIASOUP_SYS_VERSION" "$OUT/mediasoup-sys"
tar -xzf "$(crate_file libuv-sys2 "$LIBUV_SYS2_VERSION")" -C "$WORK"

SUB="$OUT/mediasoup-sys/subprojects"

# A [wrap-file] whose directory already exists is used as it is: no download, no
# hash check. Keep only the [provide] section of each original wrap.
write_wrap() { # name directory provide-lines...
  local name=$1 dir=$2
  shift 2
  {
    echo "# Rewritten by scripts/prepare-mediasoup.sh: local folder, nothing to download."
    echo "[wrap-file]"
    echo "directory = $dir"
    echo
    echo "[provide]"
    printf '%s\n' "$@"
  } >"$SUB/$name.wrap"
}

# --- libuv --------------------------------------------------------------------
cp -r "$SHIMS/libuv" "$SUB/throng-libuv"
cp -r "$WORK/libuv-sys2-$LIBUV_SYS2_VERSION/libuv" "$SUB/throng-libuv/libuv"
write_wrap libuv throng-libuv "libuv = libuv_dep"

# --- openssl: Debian's static archives ---------------------------------------
extract_archive() { # archive dest-dir list-file
  mkdir -p "$2"
  (cd "$2" && ar x "$1")
  (cd "$2" && ar t "$1") >"$3"
  [[ $(sort "$3" | uniq -d | wc -l) -eq 0 ]] || die "$1 has duplicate member names"
}
MULTIARCH=$(gcc -print-multiarch)
cp -r "$SHIMS/openssl" "$SUB/throng-openssl"
extract_archive "/usr/lib/$MULTIARCH/libcrypto.a" "$SUB/throng-openssl/objects/crypto" "$SUB/throng-openssl/objects/crypto.txt"
extract_archive "/usr/lib/$MULTIARCH/libssl.a" "$SUB/throng-openssl/objects/ssl" "$SUB/throng-openssl/objects/ssl.txt"
write_wrap openssl throng-openssl "dependency_names = libcrypto, libssl, openssl"

# --- flatbuffers: Debian's 2.0.8 ---------------------------------------------
cp -r "$SHIMS/flatbuffers" "$SUB/throng-flatbuffers"
extract_archive "/usr/lib/$MULTIARCH/libflatbuffers.a" "$SUB/throng-flatbuffers/objects/flatbuffers" "$SUB/throng-flatbuffers/objects/flatbuffers.txt"
write_wrap flatbuffers throng-flatbuffers "flatbuffers = flatbuffers_dep"

# --- unordered_dense ----------------------------------------------------------
cp -r "$SHIMS/unordered_dense" "$SUB/throng-unordered-dense"
# The Swiss tables' out-of-line parts, from Debian's static abseil archives.
ABSL_OBJ="$SUB/throng-unordered-dense/objects"
: >"$ABSL_OBJ.list.tmp"
for lib in raw_hash_set raw_logging_internal throw_delegate; do
  extract_archive "/usr/lib/$MULTIARCH/libabsl_$lib.a" "$ABSL_OBJ/$lib" "$ABSL_OBJ/$lib.txt"
  sed "s|^|$lib/|" "$ABSL_OBJ/$lib.txt" >>"$ABSL_OBJ.list.tmp"
done
mv "$ABSL_OBJ.list.tmp" "$ABSL_OBJ/absl.txt"
write_wrap unordered-dense throng-unordered-dense "dependency_names = unordered_dense"

# --- libsrtp3: Debian source package libsrtp2 + compatibility layer ----------
# apt-get source needs deb-src entries: derive them from the machine's own
# Debian sources, in a private apt state directory (the system's is untouched).
APT="$WORK/apt"
mkdir -p "$APT/sources" "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/dl"
found_sources=0
for f in /etc/apt/sources.list.d/*.sources; do
  [[ -f "$f" ]] || continue
  grep -q '^Types:.*\bdeb\b' "$f" || continue
  sed -E 's/^Types:.*/Types: deb-src/' "$f" >"$APT/sources/$(basename "$f")"
  found_sources=1
done
if [[ -f /etc/apt/sources.list ]] && grep -q '^deb ' /etc/apt/sources.list; then
  sed -n -E 's/^deb (.*)/deb-src \1/p' /etc/apt/sources.list >"$APT/sources/from-sources-list.list"
  found_sources=1
fi
[[ $found_sources -eq 1 ]] || die "no Debian apt sources found to derive deb-src entries from"
APT_OPTS=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$APT/sources"
  -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache" -o "APT::Sandbox::User=root")
apt-get "${APT_OPTS[@]}" -qq update
(cd "$APT/dl" && apt-get "${APT_OPTS[@]}" -qq source --download-only "$LIBSRTP2_SOURCE=$LIBSRTP2_VERSION-*" >/dev/null 2>&1) \
  || (cd "$APT/dl" && apt-get "${APT_OPTS[@]}" -qq source --download-only "$LIBSRTP2_SOURCE" >/dev/null)
ORIG=$(find "$APT/dl" -name "${LIBSRTP2_SOURCE}_${LIBSRTP2_VERSION}.orig.tar.*" -print -quit)
[[ -n "$ORIG" ]] || die "Debian source $LIBSRTP2_SOURCE $LIBSRTP2_VERSION not found"
mkdir -p "$WORK/srtp"
tar -xf "$ORIG" -C "$WORK/srtp"
mv "$WORK/srtp/libsrtp-$LIBSRTP2_VERSION" "$SUB/libsrtp2"
cp -r "$SHIMS/libsrtp3" "$SUB/throng-libsrtp3"
write_wrap libsrtp3 throng-libsrtp3 "libsrtp3 = libsrtp3_dep"

# --- mediasoup source fix: DTLS BIO callback ----------------------------------
# onSslBioOut returns 1 for every callback but exactly BIO_CB_RETURN, so for
# BIO_CB_CTRL|BIO_CB_RETURN it answers "kernel TLS on" to BIO_get_ktls_send().
# Debian's OpenSSL has kTLS support compiled in and then skips allocating its
# write buffer: the worker segfaults in the first DTLS handshake with a browser.
# Return OpenSSL's own result whenever the BIO_CB_RETURN bit is set.
DTLS="$OUT/mediasoup-sys/src/RTC/DtlsTransport.cpp"
BEFORE='(operationType == BIO_CB_RETURN) ? static_cast<long>(ret) : 1;'
AFTER='((operationType \& BIO_CB_RETURN) != 0) ? static_cast<long>(ret) : 1;'
grep -qF "$BEFORE" "$DTLS" || die "DtlsTransport.cpp no longer has the BIO callback line this fix expects"
sed -i "s/(operationType == BIO_CB_RETURN) ? static_cast<long>(ret) : 1;/$AFTER/" "$DTLS"
grep -qF '((operationType & BIO_CB_RETURN) != 0)' "$DTLS" || die "DTLS BIO fix did not apply"

# --- Throng's patches to the worker's hot path --------------------------------
# Each third_party/mediasoup-patches/*.patch is a unified diff against the
# mediasoup-sys crate's files (as `git diff --no-index` writes it, paths from the
# crate's root), written so that it could be offered upstream; see the README
# there for what each one does and what it measured.
for f in "${PATCHES[@]}"; do
  patch -d "$OUT/mediasoup-sys" -p1 --batch --forward --no-backup-if-mismatch --quiet <"$f" >"$WORK/patch.log" 2>&1 \
    || { cat "$WORK/patch.log" >&2; die "$(basename "$f") does not apply to mediasoup-sys $MEDIASOUP_SYS_VERSION"; }
done

# --- one worker build for every cargo profile and feature set ----------------
# build.rs builds the worker in meson's build directory under its OUT_DIR,
# which differs for each cargo profile and each feature set of the crates
# around it: `cargo build --release`, or `-p media-node` after a workspace
# build, compiled the whole worker again (7.5 minutes). Point meson at one
# build directory per build type instead (THRONG_WORKER_BUILD_DIR, set by
# .cargo/config.toml): ninja then finds it up to date and only installs the
# library into the new OUT_DIR.
BUILD_RS="$OUT/mediasoup-sys/build.rs"
python3 - "$BUILD_RS" <<'PY' || die "build.rs no longer has the build command this change expects"
import sys
p = sys.argv[1]
s = open(p).read()
old = """    // Build
    if !Command::new(&python)
        .arg("-m")
        .arg("invoke")
        .arg("libmediasoup-worker")
"""
new = """    // Build
    // Throng (scripts/prepare-mediasoup.sh): one meson build directory per
    // build type, shared by every cargo profile and feature set, and a lock
    // around it (a release and a dev build may run at once).
    let worker_build_dir = match env::var("THRONG_WORKER_BUILD_DIR") {
        Ok(dir) if !dir.is_empty() => format!("{dir}/{build_type}"),
        _ => format!("{out_dir}/build"),
    };
    fs::create_dir_all(&worker_build_dir).expect("Failed to create the worker build directory");
    if !Command::new("flock")
        .arg(format!("{worker_build_dir}.lock"))
        .arg(&python)
        .arg("-m")
        .arg("invoke")
        .arg("libmediasoup-worker")
        .env("BUILD_DIR", &worker_build_dir)
"""
assert s.count(old) == 1, "the build command"
s = s.replace(old, new)
open(p, 'w').write(s)
PY

# --- PyPI: the wheels mediasoup-sys's build pip-installs ---------------------
mkdir -p "$OUT/wheelhouse"
python3 -m pip download --quiet --only-binary=:all: --dest "$OUT/wheelhouse" "${WHEELS[@]}"

# --- into place, keeping the times of every file whose bytes did not change ---
python3 - "$OUT" "$FINAL" <<'PY'
import filecmp, os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
def same(a, b):
    if os.path.islink(a) or os.path.islink(b):
        return os.path.islink(a) and os.path.islink(b) and os.readlink(a) == os.readlink(b)
    return (os.path.isfile(b) and os.stat(a).st_mode == os.stat(b).st_mode
            and filecmp.cmp(a, b, shallow=False))
os.makedirs(dst, exist_ok=True)
for root, dirs, files in os.walk(dst, topdown=False):
    rel = os.path.relpath(root, dst)
    for name in files + dirs:
        d, s = os.path.join(root, name), os.path.join(src, rel, name)
        if os.path.lexists(s) and (os.path.isdir(s) and not os.path.islink(s)) == (os.path.isdir(d) and not os.path.islink(d)):
            continue
        if os.path.isdir(d) and not os.path.islink(d):
            shutil.rmtree(d)
        else:
            os.remove(d)
for root, dirs, files in os.walk(src):
    rel = os.path.relpath(root, src)
    os.makedirs(os.path.join(dst, rel), exist_ok=True)
    for name in files:
        s, d = os.path.join(root, name), os.path.join(dst, rel, name)
        if os.path.lexists(d) and same(s, d):
            continue
        if os.path.lexists(d):
            os.remove(d)
        if os.path.islink(s):
            os.symlink(os.readlink(s), d)
        else:
            shutil.copyfile(s, d)
            shutil.copymode(s, d)
PY
rm -rf "$OUT"
echo "$STAMP" >"$FINAL/stamp"
log "ready ($(du -sh "$FINAL" | cut -f1))"
