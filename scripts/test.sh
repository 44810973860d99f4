#!/usr/bin/env bash
# The whole test suite: the static checks (formatting, lints, which crate
# may link what), then brings up the stack, runs every unit, integration
# and doc test against the real Postgres and the emulators, stops what it
# started, and exits non-zero on any failure.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
# One build per run: incremental state would only add gigabytes to the disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Layers point down: nothing below the worker but the source links sqlx.
scripts/check-layers.sh
stack_up_for_script
cd "$ROOT"
cargo test --workspace --all-targets --locked --no-fail-fast "$@"
cargo test --workspace --doc --locked
# The deployment files (compose, k8s, Dockerfile), validated offline.
scripts/check-deploy.sh
