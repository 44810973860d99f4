#!/usr/bin/env bash
# The whole test suite: brings up the stack, runs every unit and integration
# test against the real Postgres and the emulators, stops what it started,
# and exits non-zero on any failure.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
stack_up_for_script
cd "$ROOT"
cargo test --workspace --all-targets --locked "$@"
# The deployment files (compose, k8s, Dockerfile), validated offline.
scripts/check-deploy.sh
