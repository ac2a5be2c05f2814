#!/usr/bin/env python3
"""Cross-checks between the deployment files and the server's source.

Run by infra/validate.sh (it needs PyYAML, which the validation virtualenv has):

    infra/check_ops.py --rendered rendered/dev.yaml rendered/production.yaml

It checks that
  * every alert in infra/prometheus/mdm.rules.yaml has a severity, a summary, a
    description and a runbook link to a heading of docs/operations.md, and a promtool
    test in which it fires (and the links inside docs/operations.md lead somewhere);
  * every mdm_ metric an alert uses is registered somewhere in the server's source
    (shared/, services/, adapters/), with the labels the alert matches on; metrics
    from elsewhere (Prometheus' `up`, kube-state-metrics) are listed below;
  * the Ingress of every rendered overlay routes every public route that a service or
    adapter registers to that service's own Service, whichever order the ingress
    controller tries its regular expressions in;
  * every Deployment that runs `serve --only X` is labelled X, and every such X has an
    internal URL http://mdm-X:8081 in the mdm-services ConfigMap.

The source is read, not run: a metric or route counts when its name is written in a
registration (prometheus `Opts::new("...")`, `IntGauge::new("...")`, actix
`web::resource("...")`, or a `const` path) outside `#[cfg(test)]` code.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "infra/prometheus/mdm.rules.yaml"
RULE_TESTS = sorted((ROOT / "infra/prometheus/tests").glob("*.yaml"))
SCRAPE_CONFIG = ROOT / "infra/prometheus/prometheus.example.yaml"
OPERATIONS = ROOT / "docs/operations.md"
SOURCE_DIRS = ["shared", "services", "adapters"]

# The crate that serves each service's routes.
CRATES = {
    "enrollment": "services/enrollment",
    "inventory": "services/inventory",
    "dispatch": "services/dispatch",
    "apple": "adapters/apple",
    "android": "adapters/android",
    "windows": "adapters/windows",
}
PUBLIC_PREFIXES = ("/api/", "/mdm/", "/EnrollmentServer/", "/ManagementServer/")
SAMPLE_ID = "0190b1a2-7c3d-7e4f-8a5b-6c7d8e9f0a1b"

# Routes that the source builds from pieces (closures, format!), which a scan of
# literals cannot see, with the service that owns each.
COMPOSED_ROUTES = [
    *(
        (f"/api/v1/deviceManagement/managedDevices/{SAMPLE_ID}/{action}", "dispatch")
        for action in (
            "remoteLock",
            "resetPasscode",
            "wipe",
            "retire",
            "rebootNow",
            "syncDevice",
            "deviceActionResults",
            "retirePreview",
            "wipePreview",
        )
    ),
    (f"/api/v1/deviceManagement/managedDevices/{SAMPLE_ID}/deviceActionResults/{SAMPLE_ID}/cancel", "dispatch"),
    *(
        (f"/api/v1/me/managedDevices/{SAMPLE_ID}/{action}", "dispatch")
        for action in ("remoteLock", "resetPasscode", "wipe", "retire")
    ),
    (f"/api/v1/deviceManagement/managedDevices/{SAMPLE_ID}", "inventory"),
    (f"/api/v1/me/managedDevices/{SAMPLE_ID}", "inventory"),
    (f"/api/v1/users/{SAMPLE_ID}/managedDevices", "inventory"),
    (f"/api/v1/users/{SAMPLE_ID}", "enrollment"),
    (f"/api/v1/groups/{SAMPLE_ID}/members/{SAMPLE_ID}", "inventory"),
    (f"/api/v1/deviceManagement/managedDevices/{SAMPLE_ID}/androidResetPasscode", "android"),
]

# Metrics the rules may use that other exporters provide.
EXTERNAL_METRICS = {
    "up": "Prometheus, for every scrape target",
    "kube_deployment_status_replicas_available": "kube-state-metrics",
    "kube_deployment_status_replicas_unavailable": "kube-state-metrics",
    "kube_deployment_spec_replicas": "kube-state-metrics",
    "kube_job_failed": "kube-state-metrics",
}

# Metrics an alert already uses that the server does not export yet. Listed here they
# are reported, not failed; remove an entry once the metric exists.
PENDING_METRICS: dict[str, str] = {}

# Labels Prometheus adds to every scraped series besides those of the scrape config.
BUILTIN_TARGET_LABELS = {"job", "instance"}

PROCESS_METRICS = {
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
    "process_virtual_memory_bytes",
    "process_virtual_memory_max_bytes",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_threads",
}

PROMQL_WORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
    "group_right", "bool", "offset", "inf", "nan",
    # aggregation operators (they may be followed by `by (...)` rather than `(`)
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile",
}

errors: list[str] = []
notes: list[str] = []


def error(message: str) -> None:
    errors.append(message)


# ---- source -------------------------------------------------------------------------------


def production_source(path: Path) -> str:
    """The file's text up to its test module."""
    text = path.read_text(encoding="utf-8")
    match = re.search(r"^\s*#\[cfg\(test\)\]", text, re.MULTILINE)
    return text[: match.start()] if match else text


def rust_files(*dirs: str) -> list[Path]:
    files: list[Path] = []
    for directory in dirs:
        files.extend(sorted((ROOT / directory).glob("**/src/**/*.rs")))
    return files


class Metric:
    def __init__(self, name: str, labels: set[str], histogram: bool, where: str):
        self.name = name
        self.labels = labels
        self.histogram = histogram
        self.where = where


def exported_metrics() -> dict[str, Metric]:
    """Metrics registered in the server's source, by their exposed name."""
    found: dict[str, Metric] = {}
    prefix = None
    process_collector = False
    for path in rust_files(*SOURCE_DIRS):
        text = production_source(path)
        where = str(path.relative_to(ROOT))
        if m := re.search(r'Registry::new_custom\(\s*Some\(\s*"(\w+)"', text):
            prefix = m.group(1)
        if "ProcessCollector::for_self" in text:
            process_collector = True
        for m in re.finditer(
            r'(?:Int)?(?:Counter|Gauge|Histogram)Vec::new\(\s*(?:Histogram)?Opts::new\(\s*"([a-z_][a-z0-9_]*)"(.*?)&\[([^\]]*)\]',
            text,
            re.DOTALL,
        ):
            labels = set(re.findall(r'"(\w+)"', m.group(3)))
            found[m.group(1)] = Metric(m.group(1), labels, "Histogram" in m.group(0)[:30], where)
        for m in re.finditer(r'(Histogram)?Opts::new\(\s*"([a-z_][a-z0-9_]*)"', text):
            found.setdefault(m.group(2), Metric(m.group(2), set(), bool(m.group(1)), where))
        for m in re.finditer(r'\b(Int)?(Counter|Gauge)::new\(\s*"([a-z_][a-z0-9_]*)"', text):
            found.setdefault(m.group(3), Metric(m.group(3), set(), False, where))
        # Helpers that prefix a name: let counter = |name, help| IntCounter::new(format!("apple_{name}"), ...)
        for m in re.finditer(
            r'let\s+(\w+)\s*=\s*\|[^|]*\|\s*(?:Int)?(?:Counter|Gauge)::new\(\s*format!\(\s*"([a-z_]*)\{\w+\}"',
            text,
        ):
            helper, name_prefix = m.group(1), m.group(2)
            for call in re.finditer(rf'\b{helper}\(\s*"([a-z0-9_]+)"', text):
                name = name_prefix + call.group(1)
                found.setdefault(name, Metric(name, set(), False, where))
    if prefix is None:
        error("no `Registry::new_custom(Some(\"...\"))` in the source: the metric prefix is unknown")
        prefix = "mdm"
    exposed = {f"{prefix}_{name}": metric for name, metric in found.items()}
    if process_collector:
        for name in PROCESS_METRICS:
            exposed[f"{prefix}_{name}"] = Metric(name, set(), False, "prometheus ProcessCollector")
    return exposed


def replace_route_params(path: str) -> str:
    """`/x/{id:[0-9]{8}}/y` -> `/x/<sample id>/y` (parameters may nest braces)."""
    out, depth = [], 0
    for char in path:
        if char == "{":
            if depth == 0:
                out.append(SAMPLE_ID)
            depth += 1
        elif char == "}" and depth:
            depth -= 1
        elif depth == 0:
            out.append(char)
    return "".join(out)


def public_routes() -> list[tuple[str, str, str]]:
    """(path, owning service, where) of every literal public route in the source."""
    routes = []
    for service, crate in CRATES.items():
        for path in rust_files(crate):
            text = production_source(path)
            where = str(path.relative_to(ROOT))
            literals = re.findall(r'web::resource\(\s*"([^"]+)"', text)
            literals += [v for _, v in re.findall(r'const\s+(\w+)\s*:\s*&str\s*=\s*"([^"]+)"', text)]
            for literal in literals:
                if literal.startswith(PUBLIC_PREFIXES):
                    routes.append((replace_route_params(literal), service, where))
    return routes


# ---- alert rules ------------------------------------------------------------------------


def github_anchor(heading: str) -> str:
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def runbook_anchors() -> set[str]:
    if not OPERATIONS.exists():
        error(f"{OPERATIONS.relative_to(ROOT)} is missing: the alerts' runbooks live there")
        return set()
    anchors = set()
    for line in OPERATIONS.read_text(encoding="utf-8").splitlines():
        if m := re.match(r"^#{1,6}\s+(.*)$", line):
            anchors.add(github_anchor(m.group(1)))
    return anchors


def check_operations_links(anchors: set[str]) -> None:
    """Links inside docs/operations.md (`](#anchor)`) lead to one of its headings."""
    if not OPERATIONS.exists():
        return
    for anchor in re.findall(r"\]\(#([^)]+)\)", OPERATIONS.read_text(encoding="utf-8")):
        if anchor not in anchors:
            error(f"docs/operations.md links to #{anchor}, which is none of its headings")


def strip_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def metric_selectors(expr: str):
    """(metric name, {label: ...} text or None) for every series name in a PromQL expr."""
    cleaned = strip_strings(expr)
    # Grouping label lists are not metric names.
    cleaned = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", cleaned)
    cleaned = re.sub(r"\[[^\]]*\]", "", cleaned)  # range selectors
    for m in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^}]*\})?", cleaned):
        name, selector = m.group(1), m.group(2)
        rest = cleaned[m.end():].lstrip()
        if rest.startswith("(") and selector is None:
            continue  # a function
        start = m.start()
        if start > 0 and (cleaned[start - 1].isdigit() or cleaned[start - 1] == "."):
            continue  # part of a number or duration
        if name.lower() in PROMQL_WORDS:
            continue
        # Label names inside a selector are matched with the selector, not here.
        before = cleaned[:start]
        if before.count("{") > before.count("}"):
            continue
        yield name, selector


def scrape_target_labels() -> set[str]:
    labels = set(BUILTIN_TARGET_LABELS)
    config = yaml.safe_load(SCRAPE_CONFIG.read_text(encoding="utf-8"))
    jobs = [job for job in config.get("scrape_configs", []) if job.get("job_name") == "mdm"]
    if not jobs:
        error(f"{SCRAPE_CONFIG.relative_to(ROOT)} has no scrape job named mdm")
    for job in jobs:
        for relabel in job.get("relabel_configs", []):
            if "target_label" in relabel:
                labels.add(relabel["target_label"])
    if str(RULES.name) not in [Path(f).name for f in config.get("rule_files", [])]:
        error(f"{SCRAPE_CONFIG.relative_to(ROOT)} does not load {RULES.name}")
    return labels


def check_rules(metrics: dict[str, Metric]) -> int:
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    anchors = runbook_anchors()
    check_operations_links(anchors)
    target_labels = scrape_target_labels()
    tested = set()
    for test_file in RULE_TESTS:
        for test in yaml.safe_load(test_file.read_text(encoding="utf-8")).get("tests", []):
            for case in test.get("alert_rule_test", []):
                if case.get("exp_alerts"):
                    tested.add(case["alertname"])
    names: set[str] = set()
    count = 0
    used_pending: set[str] = set()
    for group in rules.get("groups", []):
        for rule in group.get("rules", []):
            alert = rule.get("alert")
            if not alert:
                continue
            count += 1
            if alert in names:
                error(f"alert {alert} is defined twice")
            names.add(alert)
            severity = rule.get("labels", {}).get("severity")
            if severity not in ("warning", "critical"):
                error(f"alert {alert}: severity must be warning or critical, not {severity!r}")
            annotations = rule.get("annotations", {})
            for key in ("summary", "description", "runbook_url"):
                if not annotations.get(key):
                    error(f"alert {alert}: annotation {key} is missing")
            runbook = annotations.get("runbook_url", "")
            if not runbook.startswith("docs/operations.md#"):
                error(f"alert {alert}: runbook_url must point into docs/operations.md, not {runbook!r}")
            elif runbook.split("#", 1)[1] not in anchors:
                error(f"alert {alert}: docs/operations.md has no heading for #{runbook.split('#', 1)[1]}")
            if alert not in tested:
                error(f"alert {alert}: no promtool test in infra/prometheus/tests expects it to fire")
            for name, selector in metric_selectors(rule["expr"]):
                if name.startswith("mdm_"):
                    base = re.sub(r"_(bucket|sum|count)$", "", name)
                    metric = metrics.get(name) or (metrics.get(base) if metrics.get(base, None) and metrics[base].histogram else None)
                    if metric is None:
                        if name in PENDING_METRICS:
                            used_pending.add(name)
                            continue
                        error(f"alert {alert}: the server exports no metric {name}")
                        continue
                    if selector:
                        allowed = metric.labels | target_labels
                        allowed |= {f"exported_{label}" for label in metric.labels if label in target_labels}
                        if name.endswith("_bucket"):
                            allowed.add("le")
                        for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", strip_strings(selector)):
                            if label not in allowed:
                                error(
                                    f"alert {alert}: {name} has no label {label} "
                                    f"(it has {', '.join(sorted(metric.labels)) or 'none'}; "
                                    f"targets add {', '.join(sorted(target_labels))})"
                                )
                elif name not in EXTERNAL_METRICS:
                    error(f"alert {alert}: {name} is neither an mdm_ metric nor a known external one")
    for name in PENDING_METRICS:
        if name in metrics:
            notes.append(f"{name} is exported now: remove it from PENDING_METRICS in infra/check_ops.py")
        elif name in used_pending:
            notes.append(f"not exported yet, used by an alert: {name} ({PENDING_METRICS[name]})")
    return count


# ---- manifests -----------------------------------------------------------------------------


def nginx_regex_backend(paths, request_path: str, order: str):
    """The backend ingress-nginx picks with use-regex: `location ~* "^<path>"` blocks,
    the first match wins. The documented order is by descending path length; older
    controllers sorted by descending path string. Both must agree."""
    if order == "length":
        ordered = sorted(paths, key=lambda p: len(p[0]), reverse=True)
    else:
        ordered = sorted(paths, key=lambda p: p[0], reverse=True)
    for pattern, backend in ordered:
        if re.match(pattern, request_path, re.IGNORECASE):
            return backend
    return None


def check_manifests(rendered: Path, routes) -> None:
    docs = [d for d in yaml.safe_load_all(rendered.read_text(encoding="utf-8")) if d]
    name = rendered.stem
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    ingresses = [d for d in docs if d["kind"] == "Ingress"]
    if len(ingresses) != 1:
        error(f"{name}: expected one Ingress, found {len(ingresses)}")
        return
    ingress = ingresses[0]
    if ingress["metadata"].get("annotations", {}).get("nginx.ingress.kubernetes.io/use-regex") != "true":
        error(f"{name}: the Ingress paths are regular expressions but use-regex is not on")
    for rule in ingress["spec"]["rules"]:
        paths = []
        for entry in rule["http"]["paths"]:
            backend = entry["backend"]["service"]
            if backend["name"] not in services:
                error(f"{name}: the Ingress routes {entry['path']} to a Service {backend['name']} that does not exist")
            elif backend["port"].get("name") not in {p.get("name") for p in services[backend["name"]]["spec"]["ports"]}:
                error(f"{name}: Service {backend['name']} has no port {backend['port']}")
            paths.append((entry["path"], backend["name"]))
        for request_path, service, where in routes:
            expected = f"mdm-{service}"
            got = {nginx_regex_backend(paths, request_path, order) for order in ("length", "string")}
            if got != {expected}:
                shown = " or ".join(sorted(g or "nowhere" for g in got))
                error(
                    f"{name}: {request_path} ({where}) must reach {expected}; the Ingress "
                    f"(infra/k8s/base/ingress.yaml) sends it to {shown}"
                )
    # Each split Deployment runs the service its labels name, and the others can reach it.
    urls = {}
    for d in docs:
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("mdm-services"):
            urls = d.get("data", {})
    for d in docs:
        if d["kind"] != "Deployment":
            continue
        template = d["spec"]["template"]
        component = template["metadata"]["labels"].get("app.kubernetes.io/component")
        for container in template["spec"]["containers"]:
            args = container.get("args", [])
            if "--only" in args:
                only = args[args.index("--only") + 1]
                if only != component:
                    error(f"{name}: Deployment {d['metadata']['name']} runs {only} but is labelled {component}")
                url = urls.get(f"MDM_SERVICES__{only.upper()}")
                if url != f"http://mdm-{only}:8081":
                    error(f"{name}: mdm-services has {url!r} for {only}, not http://mdm-{only}:8081")
                if f"mdm-{only}" not in services:
                    error(f"{name}: no Service mdm-{only} for Deployment {d['metadata']['name']}")
            if not template["spec"].get("enableServiceLinks") is False:
                error(
                    f"{name}: Deployment {d['metadata']['name']} must set enableServiceLinks: false "
                    "(Service variables such as MDM_APPLE_PORT are unknown configuration keys)"
                )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rendered", nargs="*", default=[], type=Path, help="rendered overlays (kubectl kustomize)")
    args = parser.parse_args()

    metrics = exported_metrics()
    alerts = check_rules(metrics)
    routes = public_routes()
    if not routes:
        error("no public routes found in the source: has the route registration changed?")
    routes += [(path, service, "composed route") for path, service in COMPOSED_ROUTES]
    for rendered in args.rendered:
        check_manifests(rendered, routes)

    for note in notes:
        print(f"note: {note}", flush=True)
    for message in errors:
        print(f"error: {message}", file=sys.stderr)
    if errors:
        print(f"check_ops: {len(errors)} problems", file=sys.stderr)
        return 1
    print(
        f"check_ops: {alerts} alerts use {len(metrics)} exported metrics correctly; "
        f"{len(routes)} public routes reach their service in {len(args.rendered)} overlays"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
