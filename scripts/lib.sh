# Shared by the scripts: where the local stack lives and how to bring each
# part up or down. Sourced, not run.
#
# The stack: a real PostgreSQL server (the one already listening, else the
# installed cluster started, else installed from Debian's packages), dynalite
# (DynamoDB emulator, npm) and moto server (SQS and S3 emulator, PyPI), both
# pinned and installed under .local/ (ignored by git). Only what these
# scripts started is stopped by stack_down.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL="$ROOT/.local"
RUN_DIR="$LOCAL/run"
PG_PORT="${BACKFILL_PG_PORT:-5432}"
DYNALITE_PORT="${BACKFILL_DYNALITE_PORT:-4567}"
MOTO_PORT="${BACKFILL_MOTO_PORT:-4566}"
export PGPASSWORD="${PGPASSWORD:-postgres}"
# The emulators accept any credentials; the SDK only needs some.
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_EC2_METADATA_DISABLED=true

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root for: $*"; fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port name seconds
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        port_open "$1" && return 0
        sleep 0.1
    done
    die "$2 did not open port $1 within $3 s (log: $RUN_DIR/$2.log)"
}

psql_admin() { psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -q "$@"; }

ensure_postgres() {
    mkdir -p "$RUN_DIR"
    if port_open "$PG_PORT"; then
        log "PostgreSQL: using the server already listening on 127.0.0.1:$PG_PORT"
    elif command -v pg_lsclusters >/dev/null && [ -n "$(pg_lsclusters -h 2>/dev/null)" ]; then
        local ver name
        read -r ver name _ < <(pg_lsclusters -h | head -n1)
        log "PostgreSQL: starting the installed cluster $ver/$name"
        as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start
        echo "$ver $name" > "$RUN_DIR/postgres.started"
        wait_port "$PG_PORT" postgres 60
    else
        log "PostgreSQL: not installed; installing Debian's package"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql postgresql-client
        local ver name
        read -r ver name _ < <(pg_lsclusters -h | head -n1)
        as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start || true
        echo "$ver $name" > "$RUN_DIR/postgres.started"
        wait_port "$PG_PORT" postgres 60
        # A fresh cluster asks for a password over TCP; give the superuser the local one.
        as_root su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD '$PGPASSWORD'\""
    fi
    command -v psql >/dev/null || die "psql is missing: install postgresql-client"
    local db
    for db in test backfill_demo; do
        if [ "$(psql_admin -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
            psql_admin -d postgres -c "CREATE DATABASE $db"
        fi
    done
}

ensure_node() {
    command -v npm >/dev/null && return 0
    log "Node.js: not installed; installing Debian's packages"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm
}

ensure_dynalite() {
    mkdir -p "$RUN_DIR"
    if port_open "$DYNALITE_PORT"; then
        log "dynalite: using the server already listening on 127.0.0.1:$DYNALITE_PORT"
        return 0
    fi
    local dir="$LOCAL/dynalite"
    if ! cmp -s "$ROOT/scripts/emulators/package-lock.json" "$dir/package-lock.json" || [ ! -x "$dir/node_modules/.bin/dynalite" ]; then
        ensure_node
        log "dynalite: installing the pinned version into $dir"
        mkdir -p "$dir"
        cp "$ROOT/scripts/emulators/package.json" "$ROOT/scripts/emulators/package-lock.json" "$dir/"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    fi
    log "dynalite: starting on 127.0.0.1:$DYNALITE_PORT"
    nohup "$dir/node_modules/.bin/dynalite" --host 127.0.0.1 --port "$DYNALITE_PORT" \
        --createTableMs 0 --deleteTableMs 0 --updateTableMs 0 \
        > "$RUN_DIR/dynalite.log" 2>&1 &
    echo $! > "$RUN_DIR/dynalite.pid"
    wait_port "$DYNALITE_PORT" dynalite 30
}

ensure_moto() {
    mkdir -p "$RUN_DIR"
    if port_open "$MOTO_PORT"; then
        log "moto: using the server already listening on 127.0.0.1:$MOTO_PORT"
        return 0
    fi
    local venv="$LOCAL/venv"
    if ! cmp -s "$ROOT/scripts/emulators/requirements.txt" "$venv/requirements.txt" || [ ! -x "$venv/bin/moto_server" ]; then
        command -v python3 >/dev/null || { as_root apt-get update -q; as_root apt-get install -y -q python3 python3-venv; }
        log "moto: installing the pinned version into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check -r "$ROOT/scripts/emulators/requirements.txt"
        cp "$ROOT/scripts/emulators/requirements.txt" "$venv/requirements.txt"
    fi
    log "moto: starting on 127.0.0.1:$MOTO_PORT"
    nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" > "$RUN_DIR/moto.log" 2>&1 &
    echo $! > "$RUN_DIR/moto.pid"
    wait_port "$MOTO_PORT" moto 60
}

stack_up() {
    ensure_postgres
    ensure_dynalite
    ensure_moto
    export BACKFILL_TEST_PG_URL="postgres://postgres:$PGPASSWORD@127.0.0.1:$PG_PORT/test"
    export BACKFILL_TEST_DYNAMODB_URL="http://127.0.0.1:$DYNALITE_PORT"
    export BACKFILL_TEST_SQS_URL="http://127.0.0.1:$MOTO_PORT"
}

# Brings the stack up for one script and, if this script is what started
# it (no stack-up.sh left it running), stops it again when the script exits.
stack_up_for_script() {
    local started_here=0
    [ -f "$RUN_DIR/dynalite.pid" ] || [ -f "$RUN_DIR/moto.pid" ] || started_here=1
    stack_up
    if [ "$started_here" = 1 ]; then trap stack_down EXIT; fi
}

stack_down() {
    local f pid
    for f in "$RUN_DIR"/dynalite.pid "$RUN_DIR"/moto.pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        if kill "$pid" 2>/dev/null; then log "stopped $(basename "$f" .pid) (pid $pid)"; fi
        rm -f "$f"
    done
    if [ -f "$RUN_DIR/postgres.started" ]; then
        local ver name
        read -r ver name < "$RUN_DIR/postgres.started"
        as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" stop && log "stopped PostgreSQL $ver/$name"
        rm -f "$RUN_DIR/postgres.started"
    fi
}
