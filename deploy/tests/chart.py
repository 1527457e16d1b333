"""Render the shopmesh chart and generate istio/ from it.

Used by the chart tests (test_chart.py) and by scripts/check-deploy.sh:

    python deploy/tests/chart.py write-istio   # regenerate istio/ from the chart
    python deploy/tests/chart.py check-istio   # exit 1 when istio/ differs from the chart

istio/ is the chart's Istio output for release `shopmesh` in namespace `shopmesh` with
values-production.yaml, as plain manifests (no Helm labels) for review and for clusters
whose mesh policy is applied apart from the chart (istio.enabled=false there).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "shopmesh"
ISTIO_DIR = ROOT / "istio"
RELEASE = "shopmesh"
NAMESPACE = "shopmesh"

# istio/ file -> the chart template it comes from.
ISTIO_FILES = {
    "peer-authentication.yaml": "templates/istio/peerauthentication.yaml",
    "destination-rules.yaml": "templates/istio/destinationrule.yaml",
    "virtual-services.yaml": "templates/istio/virtualservice.yaml",
    "authorization-policies.yaml": "templates/istio/authorizationpolicy.yaml",
    "request-authentication.yaml": "templates/istio/requestauthentication.yaml",
}
ISTIO_HEADER = """\
# GENERATED from helm/shopmesh/{template} (release {release}, namespace {namespace},
# values-production.yaml) by `scripts/check-deploy.sh --write-istio`. Do not edit: change
# the chart and regenerate; deploy/tests checks that the two agree. Apply these only where
# the chart runs with istio.enabled=false (docs/deploy.md, "Istio").
"""
# Helm bookkeeping, and the version (it follows image.tag, which CI bumps).
HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version")


def helm_bin() -> str:
    """The helm binary: $HELM, then .work/tools/helm/helm, then helm on PATH."""
    for candidate in (os.environ.get("HELM"), str(ROOT / ".work" / "tools" / "helm" / "helm")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("helm")
    if not found:
        raise RuntimeError("helm not found: run scripts/check-deploy.sh (it installs it) or set HELM")
    return found


def render_text(values_files=(), set_values=(), release=RELEASE, namespace=NAMESPACE, show_only=()) -> str:
    cmd = [helm_bin(), "template", release, str(CHART), "--namespace", namespace]
    for f in values_files:
        cmd += ["-f", str(f)]
    for s in set_values:
        cmd += ["--set", s]
    for s in show_only:
        cmd += ["--show-only", s]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return proc.stdout


def render(values_files=(), set_values=(), **kw) -> list[dict]:
    return [d for d in yaml.safe_load_all(render_text(values_files, set_values, **kw)) if d]


def istio_documents() -> dict[str, list[dict]]:
    """istio/ file name -> its objects, as generated from the chart."""
    out = {}
    for name, template in ISTIO_FILES.items():
        docs = render([CHART / "values-production.yaml"], show_only=[template])
        for d in docs:
            labels = d["metadata"].get("labels", {})
            for k in HELM_ONLY_LABELS:
                labels.pop(k, None)
        out[name] = docs
    return out


def istio_file_text(name: str, docs: list[dict]) -> str:
    header = ISTIO_HEADER.format(template=ISTIO_FILES[name], release=RELEASE, namespace=NAMESPACE)
    body = "---\n".join(yaml.safe_dump(d, sort_keys=False, width=120) for d in docs)
    return header + "---\n" + body


def write_istio() -> None:
    ISTIO_DIR.mkdir(exist_ok=True)
    for name, docs in istio_documents().items():
        (ISTIO_DIR / name).write_text(istio_file_text(name, docs))
        print(f"wrote istio/{name} ({len(docs)} objects)")


def istio_differences() -> list[str]:
    problems = []
    for name, docs in istio_documents().items():
        path = ISTIO_DIR / name
        if not path.exists():
            problems.append(f"istio/{name} is missing")
            continue
        on_disk = [d for d in yaml.safe_load_all(path.read_text()) if d]
        if on_disk != docs:
            problems.append(f"istio/{name} differs from the chart's rendering")
    extra = {p.name for p in ISTIO_DIR.glob("*.yaml")} - set(ISTIO_FILES)
    problems += [f"istio/{n} is not generated from the chart" for n in sorted(extra)]
    return problems


if __name__ == "__main__":
    if sys.argv[1:] == ["write-istio"]:
        write_istio()
    elif sys.argv[1:] == ["check-istio"]:
        diffs = istio_differences()
        for d in diffs:
            print(d, file=sys.stderr)
        if diffs:
            print("regenerate with: scripts/check-deploy.sh --write-istio", file=sys.stderr)
        sys.exit(1 if diffs else 0)
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
