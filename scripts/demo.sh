#!/usr/bin/env bash
# The main job, end to end, on a fresh machine: brings up the local stack,
# seeds a sample database (1,000,000 orders with a bigint key, 200,000
# inventory rows with a composite text key), plans and produces a run, runs
# two workers until the queue is empty, and prints rows copied, time, rows/s
# and source count against target count for each table.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ORDERS="${DEMO_ORDERS:-1000000}"
INVENTORY="${DEMO_INVENTORY:-200000}"
WORKERS="${DEMO_WORKERS:-2}"

stack_up_for_script

cd "$ROOT"
log "building the backfill binary (release)"
cargo build --release --locked -q -p backfill-cli
BIN="$ROOT/target/release/backfill"
export BACKFILL_CONFIG="$ROOT/examples/backfill.toml"
export RUST_LOG="${RUST_LOG:-info}"

log "seeding backfill_demo: $ORDERS orders, $INVENTORY inventory rows"
psql_admin -d backfill_demo -v orders="$ORDERS" -v inventory="$INVENTORY" -f scripts/demo/seed.sql

"$BIN" bootstrap --fresh
run="demo-$(date +%Y%m%d-%H%M%S)"
"$BIN" plan --run "$run"
"$BIN" produce --run "$run"

log "starting $WORKERS workers (logs in $RUN_DIR/worker-N.log)"
start=$(date +%s.%N)
pids=()
for i in $(seq 1 "$WORKERS"); do
    "$BIN" work --until-idle > "$RUN_DIR/worker-$i.out" 2> "$RUN_DIR/worker-$i.log" &
    pids+=($!)
done
# What an operator watches: `status --watch` prints the run's progress
# (bars on a terminal, plain lines otherwise) until the run is finished;
# it is stopped if the workers exit first (say, with jobs in the DLQ).
"$BIN" status --run "$run" --watch --interval "${DEMO_STATUS_SECS:-15}" &
watcher=$!
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
end=$(date +%s.%N)
sleep 1
kill "$watcher" 2>/dev/null || true
wait "$watcher" 2>/dev/null || true
echo
"$BIN" status --run "$run" || true
[ "$status" = 0 ] || die "a worker failed; see $RUN_DIR/worker-*.log"
cat "$RUN_DIR"/worker-*.out

secs=$(python3 -c "print(round($end - $start, 2))")
echo
echo "== demo run $run: $WORKERS workers =="
"$BIN" verify --counts --elapsed-secs "$secs"
