#!/usr/bin/env bash
# Checks that the layers point down (issue #17): the plain data
# (backfill-model), the row -> item mapper (backfill-item) and the layers
# below the worker (capacity, dynamo, control, queue) link no Postgres
# driver; capacity links no AWS client library; the model and the mapper
# link no SQS client and not the reader (backfill-source) either.
#
# For each crate it reads `cargo tree -e normal` (normal dependencies only:
# a test may use what the crate itself must not) and fails, naming the crate,
# the offending dependency and the path to it, if a forbidden package
# appears. Read-only and builds nothing: it resolves from Cargo.lock
# (`--locked`) and fails rather than change it.
# Prints one line per crate that passes; exits non-zero if any does not.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Each forbidden name matches every package whose name starts with it
# (`sqlx` also catches sqlx-core, sqlx-postgres, ...).
no_driver=(sqlx)
no_driver_sqs_or_reader=(sqlx aws-sdk-sqs tokio-postgres backfill-source)
# The budget arithmetic is pure: it reads nothing from AWS (the provisioned
# capacity it may need is read beside the clients, in backfill-dynamo).
no_driver_no_aws_calls=(sqlx backfill-aws aws-config aws-sdk-sqs)

failed=0

check() {
    local crate=$1
    shift
    local forbidden=("$@") tree dep hits line spec
    if ! tree=$(cargo tree -p "$crate" -e normal --prefix none --locked); then
        echo "layers: cargo tree -p $crate failed (see above)" >&2
        exit 2
    fi
    local bad=0
    for dep in "${forbidden[@]}"; do
        hits=$(grep -E "^${dep}" <<<"$tree" | sed 's/ (\*)$//' | sort -u || true)
        [[ -z $hits ]] && continue
        bad=1
        echo "layers: FAIL: $crate must not link $dep, but links:" >&2
        while IFS= read -r line; do
            echo "layers:   $line" >&2
        done <<<"$hits"
        # How it gets there: the first offending package, inverted.
        spec=$(head -n1 <<<"$hits" | awk '{ sub(/^v/, "", $2); print $1 "@" $2 }')
        echo "layers:   the path to $spec:" >&2
        cargo tree -p "$crate" -e normal --locked -i "$spec" 2>&1 | sed 's/^/layers:     /' >&2 || true
    done
    if ((bad)); then
        failed=1
    else
        local list
        list=$(printf '%s, ' "${forbidden[@]}")
        echo "layers: $crate links no ${list%, }"
    fi
}

check backfill-model "${no_driver_sqs_or_reader[@]}"
check backfill-item "${no_driver_sqs_or_reader[@]}"
check backfill-capacity "${no_driver_no_aws_calls[@]}"
check backfill-dynamo "${no_driver[@]}"
check backfill-control "${no_driver[@]}"
check backfill-queue "${no_driver[@]}"

if ((failed)); then
    echo "layers: FAILED: a layer that must point down links what it must not (issue #17); move the shared types to backfill-model" >&2
    exit 1
fi
