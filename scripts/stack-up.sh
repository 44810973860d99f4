#!/usr/bin/env bash
# Brings up the local stack (Postgres, dynalite, moto) and leaves it running;
# scripts/stack-down.sh stops what this started. Idempotent.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
stack_up
log "up: postgres 127.0.0.1:$PG_PORT, dynamodb $BACKFILL_TEST_DYNAMODB_URL, sqs $BACKFILL_TEST_SQS_URL"
