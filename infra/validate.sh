#!/usr/bin/env bash
# Validates the deployment: renders every kustomize overlay of infra/k8s and checks
#   1. the Kubernetes schemas (kubernetes-validate, strict: unknown fields fail);
#   2. a static security policy (checkov): no privileged or root container, no
#      missing limits or probes, no writable root filesystem, and the rest of its
#      Kubernetes checks but the few listed in SKIPPED_CHECKS below;
#   3. the Prometheus alert rules (promtool: syntax, and a unit test per alert);
#   4. infra/check_ops.py: every metric an alert uses is one the server exports, every
#      runbook link leads to a heading of docs/operations.md, and the Ingress routes
#      every public path of every service and adapter to the Service that serves it.
# Runs from CI (.ci/run) and by hand: infra/validate.sh
# Tools go into target/ (a Python virtualenv, promtool from Debian's prometheus
# package) and are reused by later runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Kubernetes version the manifests must be valid for (the oldest one supported).
KUBERNETES_VERSION=1.32.0
PYTHON_REQUIREMENTS=("kubernetes-validate==1.37.0" "checkov==3.3.30")
VENV=target/ci-venv
TOOLS=target/ci-tools

# checkov checks that do not apply, and why.
SKIPPED_CHECKS=(
    # Image digests: the mdm image is built from this repository and referenced by its
    # release tag, postgres (dev only) by its full version; a production overlay can pin
    # a digest with `images: - name: mdm, digest: sha256:...`.
    CKV_K8S_43
)

log() { printf '\n-- %s\n' "$*"; }
fail() { printf 'infra/validate.sh: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

command -v kubectl >/dev/null 2>&1 || fail "kubectl is needed to render the kustomize overlays (kubectl kustomize); install kubectl 1.27 or newer"
command -v python3 >/dev/null 2>&1 || fail "python3 is needed for kubernetes-validate and checkov"

# ---- tools -------------------------------------------------------------------------------
stamp="$VENV/.requirements"
if [ ! -x "$VENV/bin/checkov" ] || [ "$(cat "$stamp" 2>/dev/null)" != "${PYTHON_REQUIREMENTS[*]}" ]; then
    log "installing ${PYTHON_REQUIREMENTS[*]} into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PYTHON_REQUIREMENTS[@]}"
    printf '%s' "${PYTHON_REQUIREMENTS[*]}" > "$stamp"
fi

promtool="$TOOLS/promtool"
if [ ! -x "$promtool" ]; then
    log "extracting promtool from Debian's prometheus package into $TOOLS"
    command -v apt-get >/dev/null 2>&1 || fail "promtool is needed: put it at $promtool"
    if ! apt-cache show prometheus >/dev/null 2>&1; then
        as_root apt-get update -qq
    fi
    download=$(mktemp -d)
    (cd "$download" && apt-get download -qq -o APT::Sandbox::User="$(id -un)" prometheus >/dev/null)
    dpkg-deb -x "$download"/prometheus_*.deb "$download/root"
    mkdir -p "$TOOLS"
    install -m 0755 "$download/root/usr/bin/promtool" "$promtool"
    rm -rf "$download"
fi

# ---- render ------------------------------------------------------------------------------
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A copy, so that validation never reads a real secrets.toml: production renders with
# its example file.
cp -r infra/k8s "$work/k8s"
rm -f "$work/k8s/overlays/production/secrets.toml"
cp infra/k8s/overlays/production/secrets.toml.example "$work/k8s/overlays/production/secrets.toml"
mkdir -p "$work/rendered"

overlays=()
for dir in infra/k8s/overlays/*/; do
    overlays+=("$(basename "$dir")")
done
[ ${#overlays[@]} -gt 0 ] || fail "no overlays under infra/k8s/overlays"

for overlay in "${overlays[@]}"; do
    log "kubectl kustomize infra/k8s/overlays/$overlay"
    kubectl kustomize "$work/k8s/overlays/$overlay" > "$work/rendered/$overlay.yaml"
    printf '%s objects\n' "$(grep -c '^kind:' "$work/rendered/$overlay.yaml")"
    log "kubernetes-validate ($overlay, Kubernetes $KUBERNETES_VERSION, strict)"
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "$KUBERNETES_VERSION" "$work/rendered/$overlay.yaml"
done

# ---- policy ------------------------------------------------------------------------------
log "checkov (framework kubernetes; skipped: ${SKIPPED_CHECKS[*]})"
skip=$(IFS=,; echo "${SKIPPED_CHECKS[*]}")
"$VENV/bin/checkov" --directory "$work/rendered" --framework kubernetes \
    --skip-check "$skip" --quiet --compact --skip-download --output cli

# ---- alert rules -------------------------------------------------------------------------
# (Not `promtool check config`: Debian builds Prometheus without Kubernetes service
# discovery; check_ops.py reads the example scrape configuration instead.)
log "promtool check rules, test rules"
"$promtool" check rules infra/prometheus/mdm.rules.yaml
"$promtool" test rules infra/prometheus/tests/*.yaml

# ---- cross-checks ------------------------------------------------------------------------
log "infra/check_ops.py"
"$VENV/bin/python" infra/check_ops.py --rendered "$work/rendered"/*.yaml

log "deployment validated: ${overlays[*]}"
