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
# compare: the worker benchmark of two builds side by side in one run, so
# both are read in the same period of this (shared) host. BENCH=compare
# BENCH_BASELINE=<commit> builds that commit's binary in a worktree under
# .local (its own target dir), then runs the ~1 KB and ~64 KB cases with
# the baseline and the current build in turn, BENCH_ROUNDS times (default
# 3). Each line is prefixed [before] or [after].
if [ "${BENCH:-all}" = compare ]; then
    base=${BENCH_BASELINE:?BENCH=compare needs BENCH_BASELINE=<commit>}
    sha=$(git rev-parse --short "$base")
    wt="$LOCAL/baseline-$sha"
    [ -d "$wt" ] || git worktree add --detach "$wt" "$sha"
    log "building the baseline $sha (release) in $wt"
    (cd "$wt" && CARGO_TARGET_DIR="$LOCAL/baseline-target" cargo build --release --locked -q -p backfill-cli)
    log "building the current tree (release)"
    cargo build --release --locked -q -p backfill-cli
    cargo build --release --locked -q -p backfill-testkit --example worker_bench
    for round in $(seq "${BENCH_ROUNDS:-3}"); do
        for which in before after; do
            if [ "$which" = before ]; then bin="$LOCAL/baseline-target/release/backfill"; else bin="$ROOT/target/release/backfill"; fi
            log "round $round: $which"
            BENCH_BIN="$bin" BENCH_CASES="${BENCH_CASES:-1kb,64kb}" BENCH_REPEAT=1 \
                "$ROOT/target/release/examples/worker_bench" | sed "s/^/[$which] /"
        done
    done
    ls -l "$LOCAL/baseline-target/release/backfill" "$ROOT/target/release/backfill" | awk '{print "binary size: " $5 " bytes  " $NF}'
    exit 0
fi
# fleet: BENCH_FLEET_WORKERS (8) separate `backfill work` processes
# against the answer-only, partition-true proxy at BENCH_FLEET_BUDGET WCU/s
# (20000) for BENCH_FLEET_SECS (120) of writes, on hashed and clustered
# keys (see crates/backfill-testkit/examples/fleet_bench.rs); the cases
# `ondemand,ondemand-prewarmed` (BENCH_FLEET_CASES) run the hashed table on
# a new on-demand target. Only with BENCH=fleet: a run takes about ten
# minutes.
if [ "${BENCH:-all}" = fleet ]; then
    cargo build --release --locked -q -p backfill-cli
    cargo build --release --locked -q -p backfill-testkit --example fleet_bench
    BENCH_BIN="$ROOT/target/release/backfill" "$ROOT/target/release/examples/fleet_bench"
    exit 0
fi
# verify: fleet verification of BENCH_VERIFY_ROWS (1,000,000) copied ~1 KB
# rows in dynalite with 1, 2 and 4 `backfill work` processes (rows/s, rows
# per CPU-second, read requests/s, peak RSS), then one worker verifying
# BENCH_VERIFY_BIG_ROWS (10,000,000) ~100 B rows never copied, cut to what
# the emulator answers in BENCH_VERIFY_BIG_SECS (300) (see
# crates/backfill-testkit/examples/verify_bench.rs). Only with BENCH=verify.
if [ "${BENCH:-all}" = verify ]; then
    cargo build --release --locked -q -p backfill-cli
    cargo build --release --locked -q -p backfill-testkit --example verify_bench
    BENCH_BIN="$ROOT/target/release/backfill" "$ROOT/target/release/examples/verify_bench"
    exit 0
fi
# archive: one `backfill work` process archiving BENCH_ARCHIVE_ROWS
# (300,000) ~1 KB rows into moto's S3 (rows/s, rows per CPU-second), then
# BENCH_ARCHIVE_BIG_ROWS (3,000) 64 KB rows, whose peak RSS must stay below
# BENCH_ARCHIVE_RSS_MB (200) or the run exits non-zero; each run passes
# `archive verify --no-source` (see
# crates/backfill-testkit/examples/archive_bench.rs). Only with BENCH=archive.
if [ "${BENCH:-all}" = archive ]; then
    cargo build --release --locked -q -p backfill-cli
    cargo build --release --locked -q -p backfill-testkit --example archive_bench
    BENCH_BIN="$ROOT/target/release/backfill" "$ROOT/target/release/examples/archive_bench"
    exit 0
fi
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
