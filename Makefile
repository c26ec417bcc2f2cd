# The two entry points of a new machine (see README):
#   make run    install what is missing, build, start a single-machine cluster
#   make test   install what is missing, build, run the whole test suite
.PHONY: run test deps build lint images

deps:
	scripts/install-deps.sh

build: deps
	cargo build --workspace --all-targets

lint: deps
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

# The container images the deployment tests run, from the binaries `build`
# made (scripts/images.sh; a private Docker engine, stopped again).
images: build
	scripts/images.sh

# Tests run inside a network namespace that has only loopback: WebRTC stacks
# then gather no candidate but 127.0.0.1 and no test can reach another host.
test: lint build images
	unshare --net -- sh -c 'ip link set lo up && cargo nextest run --workspace --offline --no-fail-fast'

# The optimised build: the C++ worker is shared with `build` (one meson
# directory per build type), so after `make test` only Rust compiles.
run: deps
	cargo build --release -p media-node -p coordinator
	THRONG_BIN=target/release scripts/run-local.sh
