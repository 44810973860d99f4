"""The offline deployment checks of scripts/check-deploy.sh, which renders
the overlays and installs the tools first (see there). Arguments: the
repository root, the work folder with the renders and compose.json, the
folder of KEDA's CRDs, the Kubernetes version, and the backfill binary."""
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

from check_prometheus_rule import check_prometheus_rule

root, work, keda_dir, k8s_version, backfill_bin = sys.argv[1:]
root, work, keda_dir = Path(root), Path(work), Path(keda_dir)
problems = []


def problem(where, what):
    problems.append(f"{where}: {what}")


def ok(what):
    print(f"[check-deploy] ok: {what}", file=sys.stderr)


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


# --- Kubernetes --------------------------------------------------------------
#
# Every overlay's render (k8s/overlays/*) is checked on its own: the objects
# against their schemas, then whether its parts fit together, then its
# config through the binary's own loader.


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
crd_schemas = {}
for f in sorted(keda_dir.glob("*.yaml")):
    crd = yaml.safe_load(f.read_text())
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    for v in crd["spec"]["versions"]:
        if v.get("served"):
            schema = strict(v["schema"]["openAPIV3Schema"])
            crd_schemas[(f"{group}/{v['name']}", kind)] = schema
            crd_validators[(f"{group}/{v['name']}", kind)] = jsonschema.Draft7Validator(schema)

# KEDA's ScaledJob CRD is not among the schemas this repository carries. Its
# two large parts are checked against what they are built from: the job
# template is a batch/v1 JobSpec (validated as a Job with the Kubernetes
# schemas), the triggers are the ScaledObject's (its CRD's schema). The
# fields around them are KEDA's ScaledJobSpec (v2.12+) as documented,
# written out here.
SCALEDJOB_SPEC_FIELDS = {
    "jobTargetRef", "pollingInterval", "successfulJobsHistoryLimit", "failedJobsHistoryLimit",
    "envSourceContainerName", "minReplicaCount", "maxReplicaCount", "rolloutStrategy",
    "rollout", "scalingStrategy", "triggers",
}
SCALING_STRATEGY_FIELDS = {
    "strategy", "customScalingQueueLengthDeduction", "customScalingRunningJobPercentage",
    "pendingPodConditions", "multipleScalersCalculation",
}
so_schema = crd_schemas.get(("keda.sh/v1alpha1", "ScaledObject"))
triggers_validator = (jsonschema.Draft7Validator(so_schema["properties"]["spec"]["properties"]["triggers"])
                      if so_schema else None)


def check_scaledjob(d, where0):
    where = f"{where0} {name_of(d)}"
    before = len(problems)
    spec = d.get("spec", {})
    for k in sorted(set(spec) - SCALEDJOB_SPEC_FIELDS):
        problem(where, f"spec.{k}: not a field of ScaledJobSpec")
    for k in sorted(set(spec.get("scalingStrategy", {})) - SCALING_STRATEGY_FIELDS):
        problem(where, f"spec.scalingStrategy.{k}: not a field of ScalingStrategy")
    if spec.get("scalingStrategy", {}).get("strategy", "default") not in ("default", "custom", "accurate", "eager"):
        problem(where, "spec.scalingStrategy.strategy is not default, custom, accurate or eager")
    for k in ("pollingInterval", "maxReplicaCount", "minReplicaCount",
              "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        if k in spec and not isinstance(spec[k], int):
            problem(where, f"spec.{k} is not an integer")
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "scaledjob-template"},
           "spec": spec.get("jobTargetRef", {})}
    try:
        kubernetes_validate.validate(job, k8s_version, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.absolute_path) or "(root)"
        problem(where, f"jobTargetRef (a JobSpec): {path}: {e.message}")
    if triggers_validator is None:
        problem(where, "no ScaledObject CRD to validate the triggers with")
    else:
        for e in triggers_validator.iter_errors(spec.get("triggers")):
            path = ".".join(str(p) for p in e.absolute_path) or "(root)"
            problem(where, f"spec.triggers.{path}: {e.message}")
    if len(problems) == before:
        ok(f"{where}: JobSpec, triggers and fields of KEDA's ScaledJob")


def validate_object(d, where):
    key = (d.get("apiVersion"), d.get("kind"))
    if key in crd_validators:
        errors = sorted(crd_validators[key].iter_errors(d), key=lambda e: list(e.absolute_path))
        for e in errors:
            path = ".".join(str(p) for p in e.absolute_path) or "(root)"
            problem(f"{where} {name_of(d)}", f"{path}: {e.message}")
        if not errors:
            ok(f"{where} {name_of(d)} against KEDA's CRD schema")
        return
    if key == ("keda.sh/v1alpha1", "ScaledJob"):
        check_scaledjob(d, where)
        return
    if key == ("monitoring.coreos.com/v1", "ServiceMonitor"):
        # No schema of the Prometheus Operator's CRDs is at hand offline; the
        # ServiceMonitor's references are checked below instead.
        return
    if key == ("monitoring.coreos.com/v1", "PrometheusRule"):
        # No schema either: its fields and metrics are checked by hand.
        found = check_prometheus_rule(d, metric_names)
        for path, what in found:
            problem(f"{where} {name_of(d)}", f"{path}: {what}")
        if not found:
            ok(f"{where} {name_of(d)}: the Prometheus Operator's Rule fields, metrics the binary exposes")
        return
    try:
        kubernetes_validate.validate(d, k8s_version, strict=True)
        ok(f"{where} {name_of(d)} against the Kubernetes {k8s_version} schema")
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.absolute_path) or "(root)"
        problem(f"{where} {name_of(d)}", f"{path}: {e.message}")
    except kubernetes_validate.SchemaNotFoundError as e:
        problem(f"{where} {name_of(d)}", e.message)


# secret.example.yaml is not rendered, but should still be a valid Secret.
secret_example = [d for d in yaml.safe_load_all((root / "k8s/base/secret.example.yaml").read_text()) if d]
for d in secret_example:
    validate_object(d, "k8s/base/secret.example.yaml")

# The metric names the binary registers (the worker's and the drift
# watch's), for the dashboard's queries and the alerts' expressions.
metric_names = {n for f in sorted((root / "crates/backfill-metrics/src").glob("*.rs"))
                for n in re.findall(r'"(backfill_[a-z_]+)"', f.read_text())}


def pod_templates(d):
    """The pod templates an object runs (metadata and spec)."""
    kind, spec = d.get("kind"), d.get("spec", {})
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return [spec["template"]]
    if kind == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]]
    if kind == "ScaledJob":
        return [spec["jobTargetRef"]["template"]]
    return []


def pod_template_specs(d):
    return [t["spec"] for t in pod_templates(d)]


def backfill_containers(spec):
    """The containers that run our image (the emulators of the local overlay
    and its seed step run others)."""
    return [c for c in spec.get("initContainers", []) + spec.get("containers", [])
            if c.get("image", "").split("/")[-1].split(":")[0] == "backfill"]


def pod_template_labels(docs):
    for d in docs:
        for t in pod_templates(d):
            yield t.get("metadata", {}).get("labels", {})


def labels_match(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


all_pod_specs = []  # (where, pod spec) of every render, for the Dockerfile's uid
loaders = []
tmp = work / "loader-configs"
shutil.rmtree(tmp, ignore_errors=True)
tmp.mkdir()

renders = sorted(work.glob("k8s-overlay-*.yaml"))
if not renders:
    problem("k8s/overlays", "nothing rendered")
for render in renders:
    overlay = render.stem.removeprefix("k8s-overlay-")
    where0 = f"k8s/overlays/{overlay}"
    local = overlay == "local"
    docs = [d for d in yaml.safe_load_all(render.read_text()) if d]
    if not docs:
        continue  # the render failed, which is reported already
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d.get("kind"), []).append(d)
    names = {(d.get("kind"), d.get("metadata", {}).get("name")) for d in docs}

    for d in docs:
        validate_object(d, where0)

    def P(obj, what):
        problem(f"{where0} {obj if isinstance(obj, str) else name_of(obj)}", what)

    # One namespace, its own, for everything.
    spaces = [d["metadata"]["name"] for d in by_kind.get("Namespace", [])]
    if len(spaces) != 1:
        P("Namespace", f"renders {len(spaces)} Namespaces, not 1")
    for d in docs:
        if d.get("kind") != "Namespace" and d.get("metadata", {}).get("namespace") not in spaces:
            P(d, f"is not in the overlay's namespace {spaces}")

    autoscalers = [k for k in ("ScaledObject", "HorizontalPodAutoscaler", "ScaledJob") if k in by_kind]
    if len(autoscalers) != 1:
        P("(render)", f"has {autoscalers or 'no autoscaler'}; exactly one of ScaledObject, HPA, ScaledJob belongs")
    for kind in ("ServiceAccount", "ConfigMap", "CronJob", "Service"):
        if kind not in by_kind:
            P("(render)", f"lacks a {kind}")

    # Secrets are created out of band and never committed, except the local
    # overlay's fixed credentials of its own emulators and demo database.
    for d in by_kind.get("Secret", []):
        if not local:
            P(d, "a Secret in the render: secrets are created out of band, never committed")
        elif d["metadata"]["name"].split("-")[0:2] != ["backfill", "source"] \
                and not d["metadata"]["name"].startswith("backfill-emulator-"):
            P(d, "the local overlay may generate only the demo's backfill-source and backfill-emulator-* Secrets")
    secret_names = {d["metadata"]["name"] for d in by_kind.get("Secret", [])}

    configmaps = [d for d in by_kind.get("ConfigMap", []) if "backfill.toml" in d.get("data", {})]
    configmap = configmaps[0] if len(configmaps) == 1 else None
    if not configmap:
        P("ConfigMap", f"{len(configmaps)} ConfigMaps hold a backfill.toml, not 1")
    config = {}
    if configmap:
        try:
            config = tomllib.loads(configmap["data"]["backfill.toml"])
        except tomllib.TOMLDecodeError as e:
            P(configmap, f"no readable backfill.toml: {e}")
    if config:
        if "url" in config.get("source", {}):
            P(configmap, "source.url belongs in a Secret, not the ConfigMap")
        if not local:
            for key in ("endpoint_url", "dynamodb_endpoint_url", "sqs_endpoint_url"):
                if key in config.get("aws", {}):
                    P(configmap, f"aws.{key} points away from AWS; production has none")
    grace = config.get("worker", {}).get("shutdown_grace_secs", 25)
    concurrency = config.get("worker", {}).get("concurrency", 4)
    listen = config.get("metrics", {}).get("listen", "0.0.0.0:9464")
    metrics_port = int(listen.rsplit(":", 1)[-1]) if listen.rsplit(":", 1)[-1].isdigit() else None
    if metrics_port == 0 or (listen.startswith("127.") and config):
        P(configmap or "ConfigMap", f"metrics.listen {listen} cannot be probed or scraped from outside the pod")

    pod_specs = []
    for d in docs:
        for spec in pod_template_specs(d):
            if backfill_containers(spec):
                pod_specs.append((name_of(d), spec, d))
    for where, spec, obj in pod_specs:
        all_pod_specs.append((f"{where0} {where}", spec))
        sa = spec.get("serviceAccountName")
        if ("ServiceAccount", sa) not in names:
            P(where, f"serviceAccountName {sa!r} is not in the render")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for v in volumes.values():
            cm = v.get("configMap", {}).get("name")
            if cm and ("ConfigMap", cm) not in names:
                P(where, f"volume {v['name']} mounts ConfigMap {cm!r}, which is not in the render")
        psc = spec.get("securityContext", {})
        for c in backfill_containers(spec):
            cwhere = f"{where} container {c['name']}"
            csc = c.get("securityContext", {})
            if not csc.get("runAsNonRoot", psc.get("runAsNonRoot")):
                P(cwhere, "runAsNonRoot is not set")
            if not csc.get("readOnlyRootFilesystem"):
                P(cwhere, "readOnlyRootFilesystem is not set")
            if "memory" not in c.get("resources", {}).get("limits", {}):
                P(cwhere, "has no memory limit")
            env = {e["name"]: e for e in c.get("env", [])}
            path = env.get("BACKFILL_CONFIG", {}).get("value")
            mounted = [m for m in c.get("volumeMounts", [])
                       if path and path.startswith(m["mountPath"].rstrip("/") + "/")
                       and "configMap" in volumes.get(m["name"], {})]
            if not mounted:
                P(cwhere, f"BACKFILL_CONFIG {path!r} is not inside a mounted ConfigMap")
            elif configmap and volumes[mounted[0]["name"]]["configMap"]["name"] != configmap["metadata"]["name"]:
                P(cwhere, "BACKFILL_CONFIG is not the render's backfill.toml")
            ref = env.get("BACKFILL__SOURCE__URL", {}).get("valueFrom", {}).get("secretKeyRef")
            if not ref:
                P(cwhere, "BACKFILL__SOURCE__URL does not come from a Secret")
            elif not local and secret_example and (
                    ref.get("name") != secret_example[0]["metadata"]["name"]
                    or ref.get("key") not in secret_example[0].get("stringData", {})):
                P(cwhere, f"reads Secret {ref.get('name')}/{ref.get('key')}, "
                          "which secret.example.yaml does not describe")
            elif local and ref.get("name") not in secret_names:
                P(cwhere, f"reads Secret {ref.get('name')!r}, which the local overlay does not generate")
            if configmap and config and c in spec.get("containers", []):
                files = tmp / re.sub(r"\W", "_", f"{overlay}-{where}-{c['name']}")
                files.mkdir()
                (files / "backfill.toml").write_text(configmap["data"]["backfill.toml"])
                cenv = {e["name"]: e.get("value", "stand-in") for e in c.get("env", [])}
                loaders.append(start_loader(f"{where0} {cwhere}", cenv, files / "backfill.toml"))
        # Workers: SIGTERM hands the jobs back within worker.shutdown_grace_secs;
        # the kubelet's SIGKILL must come later.
        served = obj["kind"] in ("Deployment", "ScaledJob") and \
            obj["metadata"]["name"] in ("backfill-worker", "backfill-audit")
        if served and obj["metadata"]["name"] == "backfill-worker":
            tgps = spec.get("terminationGracePeriodSeconds", 30)
            if tgps < grace + 5:
                P(where, f"terminationGracePeriodSeconds {tgps} leaves no room after "
                         f"worker.shutdown_grace_secs {grace}")
        # The drift watch: one, or its rounds and counts would come twice.
        if served and obj["metadata"]["name"] == "backfill-audit":
            args = spec["containers"][0].get("args", [])
            if args[:1] != ["audit"] or "--every" not in args:
                P(where, f"runs {args}, not `audit --every <duration>`")
            if obj["spec"].get("replicas") != 1:
                P(where, f"runs {obj['spec'].get('replicas')} replicas, not 1")
        if served:
            c = spec["containers"][0]
            ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
            if ports.get("metrics") != metrics_port:
                P(where, f"containerPort `metrics` is {ports.get('metrics')}, metrics.listen says {metrics_port}")
            ann = pod_templates(obj)[0].get("metadata", {}).get("annotations", {})
            if "prometheus.io/port" in ann and ann["prometheus.io/port"] != str(metrics_port):
                P(where, f"prometheus.io/port is {ann['prometheus.io/port']}, metrics.listen says {metrics_port}")
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                port = c.get(probe, {}).get("httpGet", {}).get("port")
                if port is not None and port not in ("metrics", metrics_port):
                    P(where, f"{probe} probes port {port}, not the metrics port")
            if obj["metadata"]["name"] == "backfill-worker" and obj["kind"] == "Deployment" \
                    and "replicas" in obj["spec"] and "ScaledObject" in by_kind:
                P(where, "sets replicas, which each apply would reset against KEDA")

    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    for pdb in by_kind.get("PodDisruptionBudget", []):
        sel = pdb["spec"].get("selector", {}).get("matchLabels", {})
        if not any(labels_match(sel, d["spec"]["template"]["metadata"].get("labels", {}))
                   for d in deployments.values()):
            P(pdb, f"selects no Deployment's pods ({sel})")
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        t = hpa["spec"]["scaleTargetRef"]
        if t.get("kind") != "Deployment" or t.get("name") not in deployments:
            P(hpa, f"scales {t.get('kind')}/{t.get('name')}, which is not in the render")
        elif "replicas" in deployments[t["name"]]["spec"]:
            P(hpa, "its Deployment sets replicas, which each apply would reset")
    services = by_kind.get("Service", [])
    for sm in by_kind.get("ServiceMonitor", []):
        sel = sm["spec"].get("selector", {}).get("matchLabels", {})
        chosen = [s for s in services if labels_match(sel, s["metadata"].get("labels", {}))]
        if not chosen:
            P(sm, f"selects no Service ({sel})")
        for ep in sm["spec"].get("endpoints", []):
            if not any(ep.get("port") in {p.get("name") for p in s["spec"].get("ports", [])} for s in chosen):
                P(sm, f"endpoint port {ep.get('port')!r} is not a port of the Services it selects")
        for s in chosen:
            if not any(labels_match(s["spec"].get("selector", {}), labels)
                       for labels in pod_template_labels(docs)):
                P(s, "selects no pods of the render")
    for cm in by_kind.get("ConfigMap", []):
        before = len(problems)
        for key, text in cm.get("data", {}).items():
            if not key.endswith(".json"):
                continue
            try:
                dash = json.loads(text)
            except json.JSONDecodeError as e:
                P(cm, f"{key} is not JSON: {e}")
                continue
            used = set()
            for panel in dash.get("panels", []):
                for t in panel.get("targets", []):
                    used |= set(re.findall(r"\b(backfill_[a-z_]+)", t.get("expr", "")))
            for m in sorted(used):
                base = re.sub(r"_(total|bucket|sum|count)$", "", m)
                base = re.sub(r"_seconds$", "", base)
                if base not in metric_names:
                    P(cm, f"{key} queries {m}, which no worker exposes")
            if used and len(problems) == before:
                ok(f"{where0} {name_of(cm)}: the dashboard queries {len(used)} metrics the worker exposes")

    for so in by_kind.get("ScaledObject", []) + by_kind.get("ScaledJob", []):
        if so["kind"] == "ScaledObject":
            target = so["spec"]["scaleTargetRef"]
            if (target.get("kind", "Deployment"), target.get("name")) not in names:
                P(so, f"scales {target.get('kind')}/{target.get('name')}, which is not in the render")
        for t in so["spec"]["triggers"]:
            ref = t.get("authenticationRef")
            if ref and (ref.get("kind", "TriggerAuthentication"), ref["name"]) not in names:
                P(so, f"authenticationRef {ref['name']!r} is not in the render")
            if t["type"] != "aws-sqs-queue" or not config:
                continue
            md = t["metadata"]
            for key, want in (("queueURL", config["queue"]["url"]),
                              ("awsRegion", config["aws"]["region"]),
                              ("queueLength", str(concurrency))):
                if md.get(key) != want:
                    P(so, f"trigger {key} is {md.get(key)!r}, the config says {want!r}")
            if local and md.get("awsEndpoint") != config["aws"].get("sqs_endpoint_url"):
                P(so, f"trigger awsEndpoint is {md.get('awsEndpoint')!r}, the config's sqs_endpoint_url is "
                      f"{config['aws'].get('sqs_endpoint_url')!r}")
            if so["kind"] == "ScaledJob":
                args = so["spec"]["jobTargetRef"]["template"]["spec"]["containers"][0].get("args", [])
                n = args[args.index("--max-jobs") + 1] if "--max-jobs" in args[:-1] else None
                if n != md.get("queueLength"):
                    P(so, f"pods take --max-jobs {n} but KEDA starts one per {md.get('queueLength')} messages")
    for ta in by_kind.get("TriggerAuthentication", []):
        for ref in ta["spec"].get("secretTargetRef", []):
            if ref.get("name") not in secret_names:
                P(ta, f"secretTargetRef {ref.get('name')!r} is not a Secret of the render")

    if local:
        seed = [d for d in by_kind.get("ConfigMap", []) if "seed.sql" in d.get("data", {})]
        if not seed or seed[0]["data"]["seed.sql"] != (root / "scripts/demo/seed.sql").read_text():
            P("ConfigMap backfill-demo-seed", "seed.sql differs from scripts/demo/seed.sql")
    ok(f"{where0}: rendered {len(docs)} objects and checked how they fit together")


# --- IAM: docs/iam-policy.json against the code and the EKS config -----------

SDK_OPS = {
    "sqs": ["receive_message", "delete_message", "change_message_visibility", "send_message",
            "get_queue_attributes", "create_queue", "purge_queue", "set_queue_attributes"],
    "dynamodb": ["batch_write_item", "put_item", "batch_get_item", "describe_table", "get_item",
                 "update_item", "query", "scan", "delete_item", "create_table", "delete_table",
                 "transact_write_items", "update_table"],
    "s3": ["put_object", "get_object", "head_object", "delete_object", "create_bucket", "head_bucket",
           "create_multipart_upload", "upload_part", "complete_multipart_upload",
           "abort_multipart_upload", "list_multipart_uploads"],
}
# Operations whose IAM action is not their own name.
IAM_ACTION_OF = {("s3", "head_object"): "s3:GetObject", ("s3", "head_bucket"): "s3:ListBucket",
                 # A multipart upload's calls are authorised as PutObject; listing
                 # a bucket's uploads is its own bucket-level action.
                 ("s3", "create_multipart_upload"): "s3:PutObject",
                 ("s3", "upload_part"): "s3:PutObject",
                 ("s3", "complete_multipart_upload"): "s3:PutObject",
                 ("s3", "list_multipart_uploads"): "s3:ListBucketMultipartUploads"}


def iam_action(service, op):
    return IAM_ACTION_OF.get((service, op)) or f"{service}:" + "".join(w.capitalize() for w in op.split("_"))


before = len(problems)
policies = json.loads((root / "docs/iam-policy.json").read_text())
granted = {}
for role, pol in policies.items():
    if role.startswith("_"):
        continue
    if pol.get("Version") != "2012-10-17" or not isinstance(pol.get("Statement"), list):
        problem(f"docs/iam-policy.json {role}", "is not a policy document (Version 2012-10-17, Statement list)")
        continue
    for s in pol["Statement"]:
        if s.get("Effect") != "Allow" or not s.get("Action") or not s.get("Resource"):
            problem(f"docs/iam-policy.json {role} {s.get('Sid')}", "needs Effect Allow, Action and Resource")
            continue
        for a in s["Action"]:
            if "*" in a:
                problem(f"docs/iam-policy.json {role} {s.get('Sid')}", f"{a}: no wildcards in a least-privilege policy")
            for r in s["Resource"]:
                if r == "*":
                    problem(f"docs/iam-policy.json {role} {s.get('Sid')}", "Resource \"*\"")
                granted.setdefault(a, set()).add(r)
# Every AWS call the code makes (the SDK's fluent builders: `.receive_message()`)
# is granted to some role; the _batch forms are the same IAM action.
called = set()
for f in (root / "crates").glob("*/src/**/*.rs"):
    text = f.read_text()
    for service, ops in SDK_OPS.items():
        for op in ops:
            for form in (op, op + "_batch"):
                if re.search(rf"\.{form}\(\)", text):
                    called.add((iam_action(service, op), f.relative_to(root)))
for action, where in sorted(called):
    if action not in granted:
        problem("docs/iam-policy.json", f"no role is granted {action}, which {where} calls")
eks_cfg = tomllib.loads((root / "k8s/overlays/eks/account/backfill.toml").read_text())
m = re.fullmatch(r"https://sqs\.([a-z0-9-]+)\.amazonaws\.com/(\d+)/(.+)", eks_cfg["queue"]["url"])
if not m:
    problem("k8s/overlays/eks/account/backfill.toml", "queue.url is not an SQS URL")
else:
    region, acct = m[1], m[2]
    arn = lambda url: "arn:aws:sqs:{}:{}:{}".format(region, acct, url.rsplit("/", 1)[-1])
    wants = {
        "sqs:ReceiveMessage": arn(eks_cfg["queue"]["url"]),
        "sqs:SendMessage": arn(eks_cfg["queue"]["dlq_url"]),
        "dynamodb:UpdateItem": f"arn:aws:dynamodb:{region}:{acct}:table/{eks_cfg['control']['table']}",
    }
    for t in eks_cfg.get("tables", []):
        wants.setdefault("dynamodb:BatchWriteItem", f"arn:aws:dynamodb:{region}:{acct}:table/{t['target']}")
    for action, resource in wants.items():
        if resource not in granted.get(action, set()):
            problem("docs/iam-policy.json", f"grants {action} on no {resource} (the EKS config's)")
if len(problems) == before:
    ok(f"docs/iam-policy.json: {len(called)} AWS calls of the code granted, ARNs match the EKS config")

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
    for where, spec in all_pod_specs:
        if str(spec.get("securityContext", {}).get("runAsUser")) != uid:
            problem(where, f"runAsUser is not the image's uid {uid}")
entry = [c for c in final if c.cmd == "ENTRYPOINT"]
if not entry or not entry[-1].json or list(entry[-1].value) != ["backfill"]:
    problem("Dockerfile", 'the ENTRYPOINT is not the exec form ["backfill"] (a shell would swallow SIGTERM)')
if not any(c.cmd == "RUN" and "ca-certificates" in c.value[0] for c in final):
    problem("Dockerfile", "the runtime stage does not install ca-certificates")

# The image is built by the same cargo command that scripts/demo.sh runs on
# the host (and so is exercised there), minus its -q.
def cargo_build_args(text):
    m = re.search(r"cargo build([^&\n\\]*)", text)
    return sorted(a for a in m[1].split() if a != "-q") if m else None


docker_build = next((cargo_build_args(c.value[0]) for c in commands
                     if c.cmd == "RUN" and "cargo build" in c.value[0]), None)
demo_build = cargo_build_args((root / "scripts/demo.sh").read_text())
if not docker_build or docker_build != demo_build:
    problem("Dockerfile", f"builds with cargo build {docker_build}, scripts/demo.sh with {demo_build}")
else:
    ok(f"Dockerfile builds with the demo's command: cargo build {' '.join(docker_build)}")

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

