"""Fixtures of the chart tests: renderings of helm/shopmesh and the contract in docs/conventions.md."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chart  # noqa: E402

ROOT = chart.ROOT
CHART = chart.CHART
PRODUCTION = CHART / "values-production.yaml"
STAGING = CHART / "values-staging.yaml"


class Rendering:
    """The objects of one `helm template`, with lookups."""

    def __init__(self, docs: list[dict], namespace: str = chart.NAMESPACE, release: str = chart.RELEASE):
        self.docs = docs
        self.namespace = namespace
        self.release = release

    def all(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict:
        found = [d for d in self.docs if d["kind"] == kind and d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
        return found[0]

    def find(self, kind: str, name: str) -> dict | None:
        found = [d for d in self.docs if d["kind"] == kind and d["metadata"]["name"] == name]
        return found[0] if found else None


def make_rendering(values_files=(), set_values=(), namespace=chart.NAMESPACE) -> Rendering:
    return Rendering(chart.render(values_files, set_values, namespace=namespace), namespace=namespace)


@pytest.fixture(scope="session")
def default() -> Rendering:
    return make_rendering()


@pytest.fixture(scope="session")
def production() -> Rendering:
    return make_rendering([PRODUCTION])


@pytest.fixture(scope="session")
def staging() -> Rendering:
    return make_rendering([STAGING], namespace="shopmesh-staging")


@pytest.fixture(scope="session", params=["default", "production", "staging"])
def rendering(request) -> Rendering:
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="session")
def values() -> dict:
    import yaml

    return yaml.safe_load((CHART / "values.yaml").read_text())


@pytest.fixture(scope="session")
def conventions() -> dict:
    """Binaries, ports, databases, env vars and metrics of docs/conventions.md."""
    text = (ROOT / "docs" / "conventions.md").read_text()
    binaries = {}
    for m in re.finditer(r"^\| `([a-z-]+)` \| `[a-z-]+/` \| (?:HTTP )?(\d+) \| (\d+) \| (?:`(shop_[a-z]+)`|—) \|$", text, re.M):
        binaries[m.group(1)] = {"port": int(m.group(2)), "metrics_port": int(m.group(3)), "database": m.group(4)}
    metrics = {}
    for m in re.finditer(r"^\| `([a-z_]+)`(?: \([a-z]+\))? \| (counter|gauge|histogram) \|", text, re.M):
        metrics[m.group(1)] = m.group(2)
    env = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", text))
    return {"binaries": binaries, "metrics": metrics, "env": env}


@pytest.fixture(scope="session")
def node_tools() -> Path:
    """The folder with the validator's node_modules (installed by scripts/check-deploy.sh)."""
    d = Path(os.environ.get("SHOPMESH_NODE_TOOLS", ROOT / ".work" / "tools" / "node"))
    if not (d / "node_modules" / "@prometheus-io" / "lezer-promql").is_dir():
        pytest.fail(f"{d} has no node_modules: run scripts/check-deploy.sh, which installs them")
    return d


@pytest.fixture(scope="session")
def promql(node_tools):
    """promql(list of (id, expr)) -> {id: {ok, error, metrics}} with Prometheus' own parser."""
    node = shutil.which("node")
    assert node, "node is required"
    script = node_tools / "promql-check.mjs"
    shutil.copyfile(Path(__file__).parent / "promql-check.mjs", script)

    def run(items):
        payload = json.dumps([{"id": i, "expr": e} for i, e in items])
        proc = subprocess.run([node, str(script)], input=payload, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        return {r["id"]: r for r in json.loads(proc.stdout)}

    return run
