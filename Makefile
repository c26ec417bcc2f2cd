# The two entry points of a new machine (see README):
#   make run    install what is missing, build, start a single-machine cluster
#   make test   install what is missing, build, run the whole test suite
.PHONY: run test deps build lint

deps:
	scripts/install-deps.sh

build: deps
	cargo build --workspace --all-targets

lint: deps
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

# Tests run inside a network namespace that has only loopback: WebRTC stacks
# then gather no candidate but 127.0.0.1 and no test can reach another host.
test: lint build
	unshare --net -- sh -c 'ip link set lo up && cargo nextest run --workspace --offline --no-fail-fast'

run: deps
	cargo build -p media-node -p coordinator
	scripts/run-local.sh
