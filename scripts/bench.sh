#!/usr/bin/env bash
# Benchmarks that print their figures (never timed tests). Brings up the
# stack like the tests do and stops what it started.
#
# capacity: workers copy through the capacity-enforcing proxy (in front of
# dynalite) under a 1,000 WCU/s fleet budget, with 1, 2 and 4 workers and a
# run where a worker joins and one leaves; prints achieved WCU/s against the
# budget, the share of throttled write requests, source rows against target
# items. BENCH_SECS sets the seconds of writes per scenario (default 20).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
stack_up_for_script
cd "$ROOT"
if [ "${BENCH:-all}" != worker ]; then
    cargo run --release --locked -q -p backfill-testkit --example capacity_bench
fi
[ "${BENCH:-all}" = capacity ] && exit 0
# worker: rows per CPU-second of one worker process into the answer-only
# proxy (rows of ~200 B, ~1 KB, ~64 KB) and into dynalite, its peak RSS,
# verify rows/s, and planning time on 1M- and 10M-row tables. BENCH_ROWS and
# BENCH_PLAN_ROWS size it; BENCH=worker or BENCH=capacity runs one part.
cargo build --release --locked -q -p backfill-cli
cargo run --release --locked -q -p backfill-testkit --example worker_bench
