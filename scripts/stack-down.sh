#!/usr/bin/env bash
# Stops what scripts/stack-up.sh started (and nothing it found running). Idempotent.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
stack_down
