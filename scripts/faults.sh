#!/usr/bin/env bash
# The fault-injection suite: every scenario of crates/backfill-cli/tests/faults.rs
# against the real Postgres, the emulators and the capacity proxy, each
# ending with a full verify; then a table of scenario, rows, faults injected,
# items lost (must be 0) and time.
#
#   scripts/faults.sh                 # 3,000 rows per scenario (as in scripts/test.sh)
#   FAULTS_ROWS=100000 scripts/faults.sh
#
# Brings up the stack like the other scripts and stops what it started.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
stack_up_for_script
cd "$ROOT"
report="$(mktemp)"
trap 'rm -f "$report"' EXIT
status=0
FAULTS_REPORT="$report" cargo test -q --locked -p backfill-cli --test faults -- --test-threads 4 || status=$?
python3 - "$report" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"{'scenario':<14} {'rows':>8} {'faults':>8} {'lost':>6} {'extra':>6} {'secs':>7}")
for r in sorted(rows, key=lambda r: r["scenario"]):
    print(f"{r['scenario']:<14} {r['rows']:>8} {r['faults']:>8} {r['lost']:>6} {r['extra']:>6} {r['secs']:>7}")
lost = sum(r["lost"] + r["extra"] for r in rows)
print(f"{len(rows)} scenarios, {lost} items lost or extra")
PY
exit "$status"
