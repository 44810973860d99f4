"""The offline check of a PrometheusRule (scripts/check_deploy.py calls it).

No schema of the Prometheus Operator's CRDs is at hand offline (neither in
scripts/schemas nor in ../shared/schemas), so the rule's shape is checked
against the fields of the Operator's monitoring.coreos.com/v1 RuleGroup and
Rule as documented, written out here, and every metric a rule's expression
names must be one the binary registers."""
import re

SPEC_FIELDS = {"groups"}
GROUP_FIELDS = {"name", "interval", "rules", "partial_response_strategy", "limit", "query_offset", "labels"}
RULE_FIELDS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
DURATION = re.compile(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")


def metric_base(name):
    """The registered name behind an exposed series name."""
    base = re.sub(r"_(total|bucket|sum|count)$", "", name)
    return re.sub(r"_seconds$", "", base)


def check_prometheus_rule(d, metric_names):
    """Problems of one PrometheusRule, as (path, what) pairs; [] when fine."""
    out = []
    spec = d.get("spec", {})
    for k in sorted(set(spec) - SPEC_FIELDS):
        out.append((f"spec.{k}", "not a field of PrometheusRuleSpec"))
    groups = spec.get("groups")
    if not isinstance(groups, list) or not groups:
        return out + [("spec.groups", "is not a non-empty list")]
    names = [g.get("name") for g in groups]
    if len(set(names)) != len(names):
        out.append(("spec.groups", f"group names repeat: {names}"))
    for i, g in enumerate(groups):
        where = f"spec.groups[{i}]"
        for k in sorted(set(g) - GROUP_FIELDS):
            out.append((f"{where}.{k}", "not a field of RuleGroup"))
        if not isinstance(g.get("name"), str) or not g.get("name"):
            out.append((f"{where}.name", "is required"))
        rules = g.get("rules")
        if not isinstance(rules, list) or not rules:
            out.append((f"{where}.rules", "is not a non-empty list"))
            continue
        for j, r in enumerate(rules):
            rwhere = f"{where}.rules[{j}]"
            for k in sorted(set(r) - RULE_FIELDS):
                out.append((f"{rwhere}.{k}", "not a field of Rule"))
            if ("alert" in r) == ("record" in r):
                out.append((rwhere, "needs exactly one of alert and record"))
            expr = r.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                out.append((f"{rwhere}.expr", "is required (a PromQL string)"))
                continue
            if expr.count("(") != expr.count(")"):
                out.append((f"{rwhere}.expr", "has unbalanced parentheses"))
            for k in ("for", "keep_firing_for"):
                if k in r and not (isinstance(r[k], str) and DURATION.match(r[k])):
                    out.append((f"{rwhere}.{k}", f"{r[k]!r} is not a Prometheus duration"))
            for k in ("labels", "annotations"):
                if k in r and not all(isinstance(v, str) for v in r[k].values()):
                    out.append((f"{rwhere}.{k}", "values must be strings"))
            for m in sorted(set(re.findall(r"\b(backfill_[a-z_]+)", expr))):
                if metric_base(m) not in metric_names:
                    out.append((f"{rwhere}.expr", f"queries {m}, which the binary does not expose"))
    return out
