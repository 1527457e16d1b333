"""Tests of the rendered shopmesh chart (helm template), the istio/ files, the alert rules
and the deployment files around them. Schemas are checked by validate-manifests.mjs and
security by checkov (scripts/check-deploy.sh); these check that the objects say what the
platform needs: the right ports, probes, thresholds, identities and callers."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

import chart
from conftest import CHART, PRODUCTION, ROOT, make_rendering

# Who calls whom (issue #7): the single source the AuthorizationPolicies and
# NetworkPolicies must agree with. Keys are the chart's workload keys.
CALLERS = {
    "auth": {"gateway"},
    "user": {"gateway", "auth", "cart", "order", "notification"},
    "product": {"gateway", "cart", "order", "recommendation"},
    "inventory": {"gateway", "product", "cart", "order", "recommendation"},
    "cart": {"gateway"},
    "order": {"gateway", "cart"},
    "payment": {"gateway", "order"},
    "notification": {"gateway"},
    "recommendation": {"gateway"},
}
GRPC_SERVICES = sorted(CALLERS)
# What each keeps where (docs/architecture.md): svc-cart has no database (carts
# live in Redis); only the services that publish or consume events reach Kafka.
WITH_DATABASE = [k for k in GRPC_SERVICES if k != "cart"]
WITH_EVENTS = {"auth", "order", "payment", "notification", "recommendation"}
WORKLOADS = ["gateway", *GRPC_SERVICES]
BINARY = {"gateway": "gateway", **{k: f"svc-{k}" for k in GRPC_SERVICES}}
# Standard series of kube-state-metrics, cAdvisor (kubelet) and Prometheus itself that
# the rules and dashboards may use besides the services' own metrics.
STANDARD_METRICS = {
    "up",
    "kube_deployment_status_replicas_unavailable",
    "kube_pod_container_status_restarts_total",
    "kube_pod_container_resource_limits",
    "container_cpu_usage_seconds_total",
    "container_memory_working_set_bytes",
}


def name(key: str) -> str:
    return f"{chart.RELEASE}-{key}"


def host(key: str, namespace: str = chart.NAMESPACE) -> str:
    return f"{name(key)}.{namespace}.svc.cluster.local"


def principal(key: str, namespace: str = chart.NAMESPACE) -> str:
    return f"cluster.local/ns/{namespace}/sa/{name(key)}"


def container(deploy: dict) -> dict:
    containers = deploy["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(c: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def pod_specs(r) -> list[tuple[str, dict]]:
    """(description, pod spec) of every pod the rendering can create."""
    out = []
    for d in r.docs:
        kind, n = d["kind"], d["metadata"]["name"]
        if kind in ("Deployment", "Job"):
            out.append((f"{kind}/{n}", d["spec"]["template"]["spec"]))
        elif kind == "CronJob":
            out.append((f"{kind}/{n}", d["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
        elif kind == "Pod":
            out.append((f"{kind}/{n}", d["spec"]))
    return out


def known_metrics(conventions) -> set[str]:
    names = set(STANDARD_METRICS)
    for metric, typ in conventions["metrics"].items():
        names.add(metric)
        if typ == "histogram":
            names |= {f"{metric}_bucket", f"{metric}_sum", f"{metric}_count"}
    return names


# ------------------------------------------------------------------ contract ---


def test_values_match_conventions(values, conventions):
    """Ports, binaries and databases in values.yaml are those of docs/conventions.md."""
    assert set(conventions["binaries"]) == set(BINARY.values()), "conventions.md lists other binaries"
    for key in WORKLOADS:
        svc = values["services"][key]
        conv = conventions["binaries"][svc["binary"]]
        assert svc["binary"] == BINARY[key]
        assert svc["port"] == conv["port"], key
        assert svc["metricsPort"] == conv["metrics_port"], key
        assert svc.get("database") == (conv["database"] or None), key


def test_every_workload_has_its_objects(rendering):
    for key in WORKLOADS:
        deploy = rendering.get("Deployment", name(key))
        pod = deploy["spec"]["template"]
        sa = rendering.get("ServiceAccount", name(key))
        assert pod["spec"]["serviceAccountName"] == sa["metadata"]["name"]
        assert sa["automountServiceAccountToken"] is False
        assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == BINARY[key]
        assert container(deploy)["command"] == [f"/usr/local/bin/{BINARY[key]}"]
        svc = rendering.get("Service", name(key))
        assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()


def rust_env_names() -> set[str]:
    """Upper-case string literals of the binaries' sources: every variable they can read."""
    names = set()
    for d in ["platform", "gateway", *(f"svc-{k}" for k in GRPC_SERVICES)]:
        for f in (ROOT / d / "src").rglob("*.rs"):
            names |= set(re.findall(r'"([A-Z][A-Z0-9_]{3,})"', f.read_text()))
    return names


def test_env_matches_what_the_binaries_read(rendering, values, conventions):
    """Every variable set is one docs/conventions.md documents or the binaries' sources read
    (or a helper: $(VAR) expansion, OTel's standard resource attributes)."""
    helpers = {"DB_PASSWORD", "REDIS_PASSWORD", "POD_NAME", "POD_NAMESPACE", "OTEL_RESOURCE_ATTRIBUTES"}
    known = conventions["env"] | rust_env_names() | {f"{k.upper()}_GRPC_URL" for k in GRPC_SERVICES}
    cm = rendering.get("ConfigMap", name("config"))
    for k in cm["data"]:
        assert k in known, f"ConfigMap sets {k}, which nothing reads"
    for key in WORKLOADS:
        c = container(rendering.get("Deployment", name(key)))
        env = env_of(c)
        for var in env:
            assert var in known or var in helpers, f"{key} sets {var}, which nothing reads"
        assert env["JWT_ISSUER"] and env["JWT_AUDIENCE"]
        svc = values["services"][key]
        assert env["METRICS_ADDR"] == f"0.0.0.0:{svc['metricsPort']}"
        if key == "gateway":
            assert env["HTTP_ADDR"] == "0.0.0.0:8080"
            for up in GRPC_SERVICES:
                port = values["services"][up]["port"]
                assert env[f"{up.upper()}_GRPC_URL"] == f"http://{host(up, rendering.namespace)}:{port}"
        else:
            assert env["GRPC_ADDR"] == f"0.0.0.0:{svc['port']}"
            if key in WITH_DATABASE:
                db_url = env["DATABASE_URL"]
                assert re.fullmatch(rf"postgres://[^:]+:\$\(DB_PASSWORD\)@[^/]+:\d+/{svc['database']}\?sslmode=[a-z-]+", db_url)
                # $(VAR) expansion only sees variables defined earlier in the list.
                names = [e["name"] for e in c["env"]]
                assert names.index("DB_PASSWORD") < names.index("DATABASE_URL")
            else:
                assert "DATABASE_URL" not in env and "DB_PASSWORD" not in env
            assert ("KAFKA_BROKERS" in env) == (key in WITH_EVENTS), key
            assert "REDIS_URL" in env
            # Required by every service binary (platform AuthSettings), from a Secret.
            assert env["INTERNAL_SERVICE_TOKEN"]["secretKeyRef"]["key"]
            assert env["AUTH_GRPC_URL"] == f"http://{host('auth', rendering.namespace)}:50051"


# -------------------------------------------------------------------- probes ---


@pytest.mark.parametrize("key", GRPC_SERVICES)
def test_grpc_probes_use_the_health_port(rendering, values, key):
    deploy = rendering.get("Deployment", name(key))
    c = container(deploy)
    port = values["services"][key]["port"]
    grpc_ports = [p for p in c["ports"] if p["name"] == "grpc"]
    assert grpc_ports == [{"name": "grpc", "containerPort": port, "protocol": "TCP"}]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["grpc"]["port"] == port, probe
    # Readiness asks for the service's own status; the overall status keeps it alive.
    assert c["readinessProbe"]["grpc"]["service"] == f"shop.{key}.v1.{key.capitalize()}Service"
    assert c["livenessProbe"]["grpc"]["service"] == ""


def test_gateway_probes(rendering):
    c = container(rendering.get("Deployment", name("gateway")))
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    # Not /readyz: one slow upstream must not take the edge out (docs/decisions.md).
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in c["ports"]


def test_graceful_termination_outlasts_the_drain(rendering):
    drain = int(rendering.get("ConfigMap", name("config"))["data"]["SHUTDOWN_DRAIN_SECONDS"])
    for key in WORKLOADS:
        spec = rendering.get("Deployment", name(key))["spec"]["template"]["spec"]
        pre_stop = container({"spec": {"template": {"spec": spec}}})["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert spec["terminationGracePeriodSeconds"] > drain + pre_stop, key


def test_topology_spread(rendering):
    for key in WORKLOADS:
        spec = rendering.get("Deployment", name(key))["spec"]["template"]["spec"]
        keys = {t["topologyKey"] for t in spec["topologySpreadConstraints"]}
        assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}, key


# ------------------------------------------------------------------ security ---


def test_every_pod_is_locked_down(rendering):
    for what, spec in pod_specs(rendering):
        assert spec.get("automountServiceAccountToken") is False, what
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["seccompProfile"]["type"] == "RuntimeDefault", what
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, what
            assert sc["readOnlyRootFilesystem"] is True, what
            assert sc["allowPrivilegeEscalation"] is False, what
            assert sc["capabilities"]["drop"] == ["ALL"], what
            assert "add" not in sc["capabilities"], what
            res = c["resources"]
            assert res["requests"]["cpu"] and res["requests"]["memory"], what
            assert res["limits"]["cpu"] and res["limits"]["memory"], what


def _pod_labels(r):
    for d in r.docs:
        if d["kind"] in ("Deployment", "Job"):
            yield d, d["spec"]["template"]["metadata"]["labels"]
        elif d["kind"] == "CronJob":
            yield d, d["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
        elif d["kind"] == "Pod":
            yield d, d["metadata"]["labels"]


def test_selectors_pick_only_their_own_pods(rendering):
    """A workload's Service, PDB, PodMonitor, NetworkPolicy and Istio policies select its
    Deployment's pods and no Job, CronJob or test pod."""
    for key in WORKLOADS:
        selector = rendering.get("Deployment", name(key))["spec"]["selector"]["matchLabels"]
        selectors = [
            ("Service", rendering.get("Service", name(key))["spec"]["selector"]),
            ("PodDisruptionBudget", rendering.get("PodDisruptionBudget", name(key))["spec"]["selector"]["matchLabels"]),
            ("NetworkPolicy", rendering.get("NetworkPolicy", name(key))["spec"]["podSelector"]["matchLabels"]),
            ("AuthorizationPolicy", rendering.get("AuthorizationPolicy", name(key))["spec"]["selector"]["matchLabels"]),
            ("PodMonitor", rendering.get("PodMonitor", name(key))["spec"]["selector"]["matchLabels"]),
        ]
        for kind, sel in selectors:
            assert sel == selector, f"{kind} {name(key)}"
            for owner, labels in _pod_labels(rendering):
                if owner["kind"] == "Deployment" and owner["metadata"]["name"] == name(key):
                    assert sel.items() <= labels.items()
                else:
                    assert not sel.items() <= labels.items(), f"{kind} {name(key)} selects {owner['kind']} {owner['metadata']['name']}"


def test_checkov_skips_are_justified(rendering):
    for d in rendering.docs:
        for k, v in d["metadata"].get("annotations", {}).items():
            if k.startswith("checkov.io/skip"):
                check, _, reason = v.partition("=")
                assert re.fullmatch(r"CKV2?_K8S_\d+", check), v
                assert len(reason) > 40, f"{d['metadata']['name']}: skip {check} needs a real reason"


# --------------------------------------------------------------- autoscaling ---


def test_hpa_for_every_workload_but_keda_ones(rendering, values):
    for key in WORKLOADS:
        entry = values["services"][key]
        hpa = rendering.find("HorizontalPodAutoscaler", name(key))
        if entry.get("keda", {}).get("enabled"):
            assert hpa is None, f"{key} is scaled by KEDA: the chart must not add an HPA"
            continue
        assert hpa is not None, key
        spec = hpa["spec"]
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name(key)}
        assert spec["minReplicas"] == 2
        targets = {m["resource"]["name"]: m["resource"]["target"] for m in spec["metrics"]}
        assert targets == {
            "cpu": {"type": "Utilization", "averageUtilization": 70},
            "memory": {"type": "Utilization", "averageUtilization": 80},
        }
        # Replicas are the HPA's: the Deployment must not fight it on every upgrade.
        assert "replicas" not in rendering.get("Deployment", name(key))["spec"]


def test_hpa_max_replicas_within_seed_range(default, production):
    for r in (default, production):
        for hpa in r.all("HorizontalPodAutoscaler"):
            assert 10 <= hpa["spec"]["maxReplicas"] <= 15, hpa["metadata"]["name"]


def test_order_scales_on_kafka_lag_with_keda(rendering):
    so = rendering.get("ScaledObject", name("order"))
    spec = so["spec"]
    assert spec["scaleTargetRef"]["name"] == name("order")
    assert spec["minReplicaCount"] == 2
    kafka = [t for t in spec["triggers"] if t["type"] == "kafka"]
    assert len(kafka) == 1
    meta = kafka[0]["metadata"]
    assert meta["lagThreshold"] == "10"
    assert meta["consumerGroup"] == "svc-order"
    assert meta["topic"] == "shop.payment.events"
    assert meta["bootstrapServers"]
    res = {t["type"]: t["metadata"]["value"] for t in spec["triggers"] if t["type"] in ("cpu", "memory")}
    assert res == {"cpu": "70", "memory": "80"}
    assert "replicas" not in rendering.get("Deployment", name("order"))["spec"]
    assert len(rendering.all("ScaledObject")) == 1


def test_order_keda_max_replicas(default, production):
    for r in (default, production):
        assert r.get("ScaledObject", name("order"))["spec"]["maxReplicaCount"] == 10


def test_pdb_per_workload(rendering):
    for key in WORKLOADS:
        pdb = rendering.get("PodDisruptionBudget", name(key))
        labels = rendering.get("Deployment", name(key))["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert pdb["spec"]["maxUnavailable"] == 1


# --------------------------------------------------------------------- Istio ---


def test_services_name_ports_for_istio(rendering, values):
    for key in WORKLOADS:
        svc = rendering.get("Service", name(key))
        api = svc["spec"]["ports"][0]
        proto = "http" if key == "gateway" else "grpc"
        assert api["name"] == proto and api["appProtocol"] == proto
        assert api["port"] == values["services"][key]["port"]
        metrics = [p for p in svc["spec"]["ports"] if p["name"] == "http-metrics"]
        assert metrics and metrics[0]["port"] == values["services"][key]["metricsPort"]


def test_authorization_policy_allows_only_real_callers(rendering, values):
    ns = rendering.namespace
    assert rendering.get("AuthorizationPolicy", name("allow-nothing"))["spec"] == {}
    for key in WORKLOADS:
        ap = rendering.get("AuthorizationPolicy", name(key))
        spec = ap["spec"]
        assert spec["action"] == "ALLOW"
        assert spec["selector"]["matchLabels"]["app.kubernetes.io/name"] == BINARY[key]
        port = str(values["services"][key]["port"])
        identity_rules = [r for r in spec["rules"] if "from" in r and "paths" not in r["to"][0]["operation"]]
        assert len(identity_rules) == 1
        principals = set(identity_rules[0]["from"][0]["source"]["principals"])
        assert identity_rules[0]["to"][0]["operation"]["ports"] == [port]
        if key == "gateway":
            expected = {"cluster.local/ns/ingress-nginx/sa/ingress-nginx", principal("test", ns)}
        else:
            expected = {principal(c, ns) for c in CALLERS[key]}
        assert principals == expected, key
        # svc-auth: every gRPC service may fetch the JWKS, and nothing else.
        jwks_rules = [r for r in spec["rules"] if "from" in r and "paths" in r["to"][0]["operation"]]
        if key == "auth":
            assert jwks_rules == [{"from": [{"source": {"principals": [principal(k, ns) for k in GRPC_SERVICES]}}],
                                   "to": [{"operation": {"ports": [port], "paths": ["/shop.auth.v1.AuthService/GetJwks"]}}]}]
        else:
            assert jwks_rules == []
        # Everything else may only scrape metrics.
        other = [r for r in spec["rules"] if "from" not in r]
        assert other == [{"to": [{"operation": {
            "ports": [str(values["services"][key]["metricsPort"])], "methods": ["GET"], "paths": ["/metrics"]}}]}]


def test_demo_catalog_off_unless_asked(default, staging):
    assert env_of(container(default.get("Deployment", name("product"))))["SEED_DEMO_CATALOG"] == "false"
    assert env_of(container(staging.get("Deployment", name("product"))))["SEED_DEMO_CATALOG"] == "true"
    assert env_of(container(default.get("Deployment", name("inventory"))))["SEED_DEMO_STOCK"] == "false"
    assert env_of(container(staging.get("Deployment", name("inventory"))))["SEED_DEMO_STOCK"] == "true"
    assert env_of(container(default.get("Deployment", name("recommendation"))))["SEED_DEMO_ORDERS"] == "false"
    assert env_of(container(staging.get("Deployment", name("recommendation"))))["SEED_DEMO_ORDERS"] == "true"


def test_recommendation_finds_the_catalog_and_stock(default):
    env = env_of(container(default.get("Deployment", name("recommendation"))))
    assert env["PRODUCT_GRPC_URL"] == f"http://{host('product')}:50053"
    assert env["INVENTORY_GRPC_URL"] == f"http://{host('inventory')}:50054"
    assert env["RECOMMENDATION_TRAIN_INTERVAL_SECONDS"] == "3600"
    assert "KAFKA_BROKERS" in env


def test_only_order_may_call_payment(rendering):
    rules = rendering.get("AuthorizationPolicy", name("payment"))["spec"]["rules"]
    principals = {p for r in rules if "from" in r for p in r["from"][0]["source"]["principals"]}
    assert principals == {principal("order", rendering.namespace), principal("gateway", rendering.namespace)}


def test_destination_rule_istio_mutual(rendering):
    for key in WORKLOADS:
        dr = rendering.get("DestinationRule", name(key))
        assert dr["spec"]["host"] == host(key, rendering.namespace)
        tp = dr["spec"]["trafficPolicy"]
        assert tp["tls"] == {"mode": "ISTIO_MUTUAL"}
        assert tp["loadBalancer"]["simple"] == "LEAST_REQUEST"
        assert tp["connectionPool"]["http"]["http2MaxRequests"] > 0
        assert tp["outlierDetection"]["consecutive5xxErrors"] > 0


def test_virtual_service_retries_only_idempotent_methods(rendering):
    for key in GRPC_SERVICES:
        vs = rendering.get("VirtualService", name(key))
        assert vs["spec"]["hosts"] == [host(key, rendering.namespace)]
        streams, idempotent, default = vs["spec"]["http"]
        regex = idempotent["match"][0]["uri"]["regex"]
        svc = f"shop.{key}.v1.{key.capitalize()}Service"
        # Streams stay open: no route timeout, no retry.
        stream_regex = streams["match"][0]["uri"]["regex"]
        assert re.fullmatch(stream_regex, f"/{svc}/WatchThings")
        assert not re.fullmatch(stream_regex, f"/{svc}/GetThing")
        assert not re.fullmatch(regex, f"/{svc}/WatchThings")
        assert streams["timeout"] == "0s" and streams["retries"] == {"attempts": 0}
        # Envoy matches the whole path (RE2 full match).
        for method in ("GetThing", "ListThings", "BatchGetThings", "SearchThings"):
            assert re.fullmatch(regex, f"/{svc}/{method}"), method
        assert re.fullmatch(regex, "/grpc.health.v1.Health/Check")
        for method in ("CreateThing", "UpdateThing", "DeleteThing", "Checkout", "ReserveStock", "AuthorizePayment"):
            assert not re.fullmatch(regex, f"/{svc}/{method}"), method
        assert not re.fullmatch(regex, f"/other.v1.Svc/GetThing")
        retry_on = set(idempotent["retries"]["retryOn"].split(","))
        assert {"unavailable", "reset"} <= retry_on
        assert idempotent["retries"]["attempts"] >= 1
        assert "match" not in default
        assert default["retries"] == {"attempts": 0}, "Istio retries by default; non-idempotent calls must not be"
        assert idempotent["timeout"] and default["timeout"]
    gw = rendering.get("VirtualService", name("gateway"))["spec"]["http"]
    assert re.fullmatch(gw[0]["match"][0]["uri"]["regex"], "/v1/products:watch")
    assert not re.fullmatch(gw[0]["match"][0]["uri"]["regex"], "/v1/products/abc")
    assert gw[0]["timeout"] == "0s" and gw[0]["retries"] == {"attempts": 0}
    assert [m["method"]["exact"] for m in gw[1]["match"]] == ["GET", "HEAD"]
    assert gw[2]["retries"] == {"attempts": 0}


def test_peer_authentication_strict(rendering, values):
    ns_wide = rendering.get("PeerAuthentication", "default")
    assert ns_wide["spec"] == {"mtls": {"mode": "STRICT"}}
    for key in WORKLOADS:
        pa = rendering.get("PeerAuthentication", name(key))
        assert pa["spec"]["mtls"] == {"mode": "STRICT"}
        # Only the metrics port takes plaintext (Prometheus is outside the mesh).
        assert pa["spec"]["portLevelMtls"] == {values["services"][key]["metricsPort"]: {"mode": "PERMISSIVE"}}


def test_request_authentication_at_the_edge(production):
    ra = production.get("RequestAuthentication", name("gateway-jwt"))
    assert ra["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "gateway"
    rule = ra["spec"]["jwtRules"][0]
    assert rule["jwksUri"] == "https://shop.example.com/.well-known/jwks.json"
    # The same issuer and audience the binaries require (JWT_ISSUER / JWT_AUDIENCE).
    env = env_of(container(production.get("Deployment", name("gateway"))))
    assert rule["issuer"] == env["JWT_ISSUER"] == "https://shop.example.com"
    assert rule["audiences"] == [env["JWT_AUDIENCE"]]
    assert rule["forwardOriginalToken"] is True


def test_native_sidecars_on_every_pod(rendering):
    for d in rendering.docs:
        if d["kind"] in ("Deployment", "Job"):
            ann = d["spec"]["template"]["metadata"]["annotations"]
        elif d["kind"] == "CronJob":
            ann = d["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["annotations"]
        elif d["kind"] == "Pod":
            ann = d["metadata"]["annotations"]
        else:
            continue
        assert ann.get("sidecar.istio.io/nativeSidecar") == "true", d["metadata"]["name"]


def test_istio_disabled_renders_no_mesh_objects():
    r = make_rendering(set_values=["istio.enabled=false"])
    kinds = {d["kind"] for d in r.docs}
    assert not kinds & {"PeerAuthentication", "DestinationRule", "VirtualService", "AuthorizationPolicy", "RequestAuthentication"}
    for np in r.all("NetworkPolicy"):
        assert "15012" not in json.dumps(np), "no istiod egress without Istio"


def test_istio_dir_matches_the_chart():
    assert chart.istio_differences() == []


# ----------------------------------------------------------- NetworkPolicies ---


def _peers(rules):
    return [p for r in rules for p in r.get("from", r.get("to", []))]


def _selected_names(peer: dict) -> set:
    sel = peer["podSelector"]
    names = {sel.get("matchLabels", {}).get("app.kubernetes.io/name")}
    for e in sel.get("matchExpressions", []):
        if e["key"] == "app.kubernetes.io/name" and e["operator"] == "In":
            names = set(e["values"])
    return names


def test_network_policies_follow_the_callers(rendering, values):
    deny = rendering.get("NetworkPolicy", name("default-deny"))
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    # Callers, plus every gRPC service fetching the JWKS from svc-auth.
    callers = {k: set(v) for k, v in CALLERS.items()}
    callers["auth"] |= set(GRPC_SERVICES)
    callees = {k: {s for s, cs in callers.items() if k in cs} for k in WORKLOADS}
    for key in WORKLOADS:
        np = rendering.get("NetworkPolicy", name(key))["spec"]
        assert np["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == BINARY[key]
        port = values["services"][key]["port"]
        from_pods = set().union(*(
            _selected_names(p)
            for r in np["ingress"] if r["ports"] == [{"port": port, "protocol": "TCP"}]
            for p in r["from"] if "podSelector" in p and "namespaceSelector" not in p
        ))
        expected = {BINARY[c] for c in callers.get(key, set())}
        if key == "gateway":
            expected.add(None)  # the helm test pod (selected by component)
        assert from_pods == expected, key
        metrics = [r for r in np["ingress"] if r["ports"] == [{"port": values["services"][key]["metricsPort"], "protocol": "TCP"}]]
        assert metrics and metrics[0]["from"] == values["networkPolicy"]["prometheus"]["from"]
        to_pods = set().union(*(
            _selected_names(p)
            for r in np["egress"] for p in r["to"] if "podSelector" in p and "namespaceSelector" not in p
        ))
        assert to_pods == {BINARY[c] for c in callees[key]}, key
        egress_ports = {p["port"] for r in np["egress"] for p in r["ports"]}
        assert 53 in egress_ports
        if key == "gateway":
            assert 5432 not in egress_ports and 9092 not in egress_ports
            assert 6379 in egress_ports
        else:
            assert 6379 in egress_ports
            assert (5432 in egress_ports) == (key in WITH_DATABASE), key
            assert (9092 in egress_ports) == (key in WITH_EVENTS), key


def test_gateway_admits_the_ingress_controller(rendering, values):
    np = rendering.get("NetworkPolicy", name("gateway"))["spec"]
    assert any(r["from"] == values["networkPolicy"]["ingressController"]["from"] for r in np["ingress"])


# ------------------------------------------------------------- observability ---


def test_pod_monitor_per_workload(rendering):
    for key in WORKLOADS:
        pm = rendering.get("PodMonitor", name(key))["spec"]
        labels = rendering.get("Deployment", name(key))["spec"]["template"]["metadata"]["labels"]
        assert pm["selector"]["matchLabels"].items() <= labels.items()
        assert pm["podMetricsEndpoints"][0]["port"] == "metrics"
        assert pm["podMetricsEndpoints"][0]["path"] == "/metrics"
        assert pm["jobLabel"] == "app.kubernetes.io/name"
        ports = container(rendering.get("Deployment", name(key)))["ports"]
        assert any(p["name"] == "metrics" for p in ports)


def test_production_monitors_carry_the_prometheus_selector_label(production):
    for pm in production.all("PodMonitor"):
        assert pm["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_alert_rules_cover_the_seed(default):
    rules = [r for g in default.get("PrometheusRule", chart.RELEASE)["spec"]["groups"] for r in g["rules"]]
    alerts = {r["alert"]: r for r in rules}
    assert {
        "ShopmeshGrpcHighErrorRatio", "ShopmeshHttpHighErrorRatio",       # error ratio > 5%
        "ShopmeshGrpcHighLatencyP95", "ShopmeshHttpHighLatencyP95",       # p95 > 1 s
        "ShopmeshTargetDown", "ShopmeshReplicasUnavailable",              # pod down
        "ShopmeshCpuNearLimit", "ShopmeshMemoryNearLimit",                # near limits
        "ShopmeshKafkaConsumerLagGrowing", "ShopmeshOutboxBacklog",       # events
        "ShopmeshOrderPaymentMismatch",
    } <= set(alerts)
    assert re.search(r"\)\s*>\s*0\.05\s*$", alerts["ShopmeshGrpcHighErrorRatio"]["expr"])
    assert re.search(r"\)\s*>\s*0\.05\s*$", alerts["ShopmeshHttpHighErrorRatio"]["expr"])
    assert "histogram_quantile(0.95" in alerts["ShopmeshGrpcHighLatencyP95"]["expr"]
    assert re.search(r"\)\s*>\s*1\s*$", alerts["ShopmeshGrpcHighLatencyP95"]["expr"])
    assert "deriv(" in alerts["ShopmeshKafkaConsumerLagGrowing"]["expr"]
    for r in rules:
        assert r["labels"]["severity"] in ("critical", "warning")
        assert r["annotations"]["summary"] and r["annotations"]["description"]


def test_alert_expressions_parse_and_use_exported_metrics(rendering, promql, conventions):
    rules = [r for g in rendering.get("PrometheusRule", chart.RELEASE)["spec"]["groups"] for r in g["rules"]]
    results = promql([(r["alert"], r["expr"]) for r in rules])
    known = known_metrics(conventions)
    for r in rules:
        res = results[r["alert"]]
        assert res["ok"], f"{r['alert']}: {res['error']}"
        assert res["metrics"], f"{r['alert']} selects no metric"
        unknown = set(res["metrics"]) - known
        assert not unknown, f"{r['alert']} uses metrics nobody exports: {unknown}"
        assert f'namespace="{rendering.namespace}"' in r["expr"], f"{r['alert']} must stay in its namespace"


def test_the_checker_rejects_broken_promql(promql):
    res = promql([("bad", "sum(rate(grpc_server_requests_total[5m])"), ("good", "up == 0")])
    assert not res["bad"]["ok"] and res["good"]["ok"]


def _dashboards(r):
    out = {}
    for cm in r.all("ConfigMap"):
        if cm["metadata"]["labels"].get("grafana_dashboard") == "1":
            for fname, text in cm["data"].items():
                out[fname] = json.loads(text)
    return out


def test_dashboards(default, promql, conventions):
    boards = _dashboards(default)
    assert set(boards) == {"shopmesh-services.json", "shopmesh-gateway.json"}
    known = known_metrics(conventions)
    items = []
    for fname, board in boards.items():
        assert board["uid"] and board["title"]
        for panel in board["panels"]:
            for t in panel.get("targets", []):
                items.append((f"{fname}/{panel['title']}/{t['refId']}", t["expr"]))
    results = promql(items)
    for item_id, _ in items:
        res = results[item_id]
        assert res["ok"], f"{item_id}: {res['error']}"
        assert set(res["metrics"]) <= known, f"{item_id}: {set(res['metrics']) - known}"
    exprs = " ".join(e for _, e in items)
    for needle in ("grpc_server_requests_total", "histogram_quantile(0.5,", "histogram_quantile(0.95,",
                   "histogram_quantile(0.99,", "db_pool_connections", 'result="hit"', "kafka_consumer_lag",
                   "outbox_backlog", "http_requests_total"):
        assert needle in exprs, needle
    titles = [p["title"] for p in boards["shopmesh-services.json"]["panels"]]
    for t in ("Request rate by method", "Server error ratio", "Latency p50 / p95 / p99",
              "PostgreSQL pool connections", "Cache hit rate", "Kafka consumer lag"):
        assert t in titles


def test_otlp_endpoint(default, production):
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in default.get("ConfigMap", name("config"))["data"]
    endpoint = production.get("ConfigMap", name("config"))["data"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert endpoint.startswith("http")
    np = production.get("NetworkPolicy", name("order"))["spec"]
    assert any(p["port"] == 4317 for r in np["egress"] for p in r["ports"]), "OTLP egress"


# ---------------------------------------------------------- secrets and HA ---


def test_secrets_from_existing_secret_by_default(default):
    assert default.all("Secret") == []
    env = env_of(container(default.get("Deployment", name("order"))))
    assert env["DB_PASSWORD"]["secretKeyRef"] == {"name": "shopmesh-postgresql", "key": "password"}
    assert env["INTERNAL_SERVICE_TOKEN"]["secretKeyRef"] == {"name": "shopmesh-internal-token", "key": "token"}


def test_secrets_from_values_when_asked():
    r = make_rendering(set_values=["postgresql.auth.existingSecret=", "postgresql.auth.password=s3cret",
                                   "redis.auth.enabled=true", "redis.auth.password=r3dis",
                                   "security.internalToken.existingSecret=",
                                   "security.internalToken.value=0123456789abcdef0123"])
    secret = r.get("Secret", name("secrets"))
    ann = secret["metadata"]["annotations"]
    assert "pre-install" in ann["helm.sh/hook"] and "pre-upgrade" in ann["helm.sh/hook"]
    migrate = r.get("Job", name("order-migrate"))
    assert int(ann["helm.sh/hook-weight"]) < int(migrate["metadata"]["annotations"]["helm.sh/hook-weight"])
    assert set(secret["data"]) == {"password", "redis-password", "token"}
    env = env_of(container(r.get("Deployment", name("order"))))
    assert env["DB_PASSWORD"]["secretKeyRef"]["name"] == name("secrets")
    assert env["REDIS_URL"] == "redis://:$(REDIS_PASSWORD)@shopmesh-redis-master.shopmesh-data.svc.cluster.local:6379/0"


def test_chart_secret_requires_a_password():
    with pytest.raises(RuntimeError, match="postgresql.auth.password is required"):
        chart.render(set_values=["postgresql.auth.existingSecret="])
    with pytest.raises(RuntimeError, match="at least 16 characters"):
        chart.render(set_values=["security.internalToken.existingSecret=", "security.internalToken.value=short"])


def test_redis_sentinel(production):
    env = env_of(container(production.get("Deployment", name("cart"))))
    url = env["REDIS_URL"]
    assert url.startswith("redis-sentinel://:$(REDIS_PASSWORD)@shopmesh-redis-node-0.")
    assert "sentinelServiceName=mymaster" in url
    assert url.count("&node=") == 2
    assert env["REDIS_PASSWORD"]["secretKeyRef"] == {"name": "shopmesh-redis", "key": "redis-password"}


def test_postgres_primary_behind_a_service(production):
    env = env_of(container(production.get("Deployment", name("order"))))
    assert "@shopmesh-pg-rw.shopmesh-data.svc.cluster.local:5432/shop_order?sslmode=require" in env["DATABASE_URL"]


# ------------------------------------------------------ migrations, backups ---


def test_migration_jobs_are_pre_install_and_pre_upgrade_hooks(rendering, values):
    sa = rendering.get("ServiceAccount", name("migrations"))
    sa_weight = int(sa["metadata"]["annotations"]["helm.sh/hook-weight"])
    assert not [j for j in rendering.all("Job") if j["metadata"]["name"] == name("cart-migrate")]
    for key in WITH_DATABASE:
        job = rendering.get("Job", name(f"{key}-migrate"))
        ann = job["metadata"]["annotations"]
        assert set(ann["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
        assert int(ann["helm.sh/hook-weight"]) > sa_weight
        spec = job["spec"]["template"]["spec"]
        assert spec["restartPolicy"] == "Never"
        assert spec["serviceAccountName"] == name("migrations")
        c = spec["containers"][0]
        assert c["command"] == [f"/usr/local/bin/svc-{key}", "migrate"]
        assert f"/{values['services'][key]['database']}?" in env_of(c)["DATABASE_URL"]
        # `migrate` reads the full service settings, the required service credential included.
        assert env_of(c)["INTERNAL_SERVICE_TOKEN"]["secretKeyRef"]["name"] == "shopmesh-internal-token"


def test_daily_backup_of_every_database(rendering, values):
    cj = rendering.get("CronJob", name("backup"))
    minute, hour, dom, month, dow = cj["spec"]["schedule"].split()
    assert minute.isdigit() and hour.isdigit() and (dom, month, dow) == ("*", "*", "*"), "daily"
    assert cj["spec"]["concurrencyPolicy"] == "Forbid"
    spec = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    c = spec["containers"][0]
    env = env_of(c)
    dbs = set(env["DATABASES"].split())
    assert dbs == {values["services"][k]["database"] for k in WITH_DATABASE}
    assert c["command"] == ["/bin/bash", "/scripts/backup.sh"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["backups"]["persistentVolumeClaim"]["claimName"] == name("backups")
    pvc = rendering.get("PersistentVolumeClaim", name("backups"))
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    scripts = rendering.get("ConfigMap", name("backup-scripts"))["data"]
    for f in ("backup.sh", "restore.sh"):
        assert scripts[f].strip() == (CHART / "files" / f).read_text().strip()


def test_restore_job_only_on_request(default):
    assert default.all("Job") == [j for j in default.all("Job") if j["metadata"]["name"].endswith("-migrate")]
    r = make_rendering(set_values=["backup.restore.backupId=20250102T023000Z", "backup.restore.databases={shop_order,shop_payment}"])
    job = r.get("Job", name("restore-20250102t023000z"))
    c = job["spec"]["template"]["spec"]["containers"][0]
    env = env_of(c)
    assert c["command"] == ["/bin/bash", "/scripts/restore.sh"]
    assert env["BACKUP_ID"] == "20250102T023000Z" and env["DATABASES"] == "shop_order shop_payment"


# ------------------------------------------------------- ingress and tests ---


def test_ingress_with_cert_manager_tls(production, values):
    ing = production.get("Ingress", name("gateway"))
    ann = ing["metadata"]["annotations"]
    issuer = ann["cert-manager.io/cluster-issuer"]
    assert production.get("ClusterIssuer", issuer)["spec"]["acme"]["server"].startswith("https://acme-v02.")
    assert ann["nginx.ingress.kubernetes.io/force-ssl-redirect"] == "true"
    assert ann["nginx.ingress.kubernetes.io/proxy-body-size"] == "2m"
    assert int(ann["nginx.ingress.kubernetes.io/proxy-read-timeout"]) > values["services"]["gateway"]["http"]["requestTimeoutSeconds"]
    assert ann["nginx.ingress.kubernetes.io/service-upstream"] == "true"
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["tls"] == [{"hosts": ["shop.example.com"], "secretName": "shopmesh-tls"}]
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": name("gateway"), "port": {"name": "http"}}


def test_no_ingress_without_a_host(default):
    assert default.all("Ingress") == [] and default.all("ClusterIssuer") == []
    with pytest.raises(RuntimeError, match="ingress.host is required"):
        chart.render(set_values=["ingress.enabled=true"])


def test_helm_test_checks_health_through_the_gateway(rendering):
    pods = rendering.all("Pod")
    assert len(pods) == 1
    pod = pods[0]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    args = pod["spec"]["containers"][0]["args"]
    assert args[-1] == f"http://{host('gateway', rendering.namespace)}:8080/readyz"
    assert "--fail-with-body" in args
    assert pod["spec"]["serviceAccountName"] == name("test")


def test_values_schema_rejects_typos():
    with pytest.raises(RuntimeError, match="kedaa"):
        chart.render(set_values=["services.order.kedaa.enabled=true"])
    with pytest.raises(RuntimeError, match="sslMode"):
        chart.render(set_values=["postgresql.sslMode=sometimes"])


def test_unknown_caller_fails():
    with pytest.raises(RuntimeError, match="not a key of services"):
        chart.render(set_values=["services.payment.callers={gateway,ordr}"])


# ----------------------------------------------------- files around the chart ---


def test_argocd_applicationset_points_at_the_chart():
    docs = [d for f in sorted((ROOT / "deploy" / "argocd").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    appsets = [d for d in docs if d["kind"] == "ApplicationSet"]
    assert len(appsets) == 1
    spec = appsets[0]["spec"]
    envs = {e["env"] for g in spec["generators"] for e in g["list"]["elements"]}
    assert envs == {"staging", "production"}
    source = spec["template"]["spec"]["source"]
    assert source["path"] == "helm/shopmesh"
    for env in envs:
        assert (CHART / f"values-{env}.yaml").is_file()
    assert source["helm"]["valueFiles"] == ["values-{{ .env }}.yaml"]


def test_workflow_runs_every_gate():
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    runs = " ".join(s.get("run", "") + " " + s.get("uses", "") for j in wf["jobs"].values() for s in j["steps"])
    for needle in ("cargo fmt --all --check", "cargo clippy", "cargo test", "bufbuild/buf-action",
                   "scripts/check-deploy.sh", "docker/build-push-action", "image.tag"):
        assert needle in runs, needle
    services = wf["jobs"]["rust"]["services"]
    assert {"postgres", "redis"} <= set(services)
    buf = next(s for s in wf["jobs"]["proto"]["steps"] if "buf-action" in s.get("uses", ""))
    assert buf["with"]["lint"] is True and buf["with"]["breaking"] is not False


def test_dockerfile_is_cached_minimal_and_non_root():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.M | re.I)
    assert {"planner", "builder", "runtime"} <= set(stages)
    assert "cargo chef cook" in text and "cargo chef prepare" in text
    runtime = text[text.rindex("FROM "):]
    assert "distroless" in runtime.splitlines()[0]
    assert re.search(r"^USER\s+65532:65532", runtime, re.M)
    ignore = (ROOT / ".dockerignore").read_text().split()
    for p in ("target", ".git", ".work"):
        assert p in ignore or f"/{p}" in ignore, p


def test_scripts_are_executable():
    for p in ("scripts/check-deploy.sh", "scripts/db-backup-restore-test.sh", "helm/shopmesh/files/backup.sh",
              "helm/shopmesh/files/restore.sh"):
        assert Path(ROOT / p).stat().st_mode & 0o111, p
    out = subprocess.run(["bash", "-n", str(CHART / "files" / "backup.sh")], capture_output=True, check=False)
    assert out.returncode == 0


def test_the_validator_rejects_what_the_api_server_would(node_tools, tmp_path):
    """validate-manifests.mjs must fail on schema errors, unknown fields and unknown kinds
    (a validator that passes everything would make check-deploy's count meaningless)."""
    import shutil

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a}\n"
        "spec: {host: h, trafficPolicy: {tls: {mode: MUTUAL_ISTIO}}}\n"
        "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: b}\n"
        "spec: {replicass: 2, selector: {matchLabels: {a: b}}, template: {spec: {containers: [{name: c, image: i}]}}}\n"
        "---\napiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: c}\n"
        "spec: {scaleTargetRef: {name: x}, triggers: [{type: kafka, metadata: {lagThreshold: 10}}]}\n"
        "---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: d}\n"
    )
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(chart.render(show_only=["templates/istio/destinationrule.yaml"])[0]))
    script = node_tools / "validate-manifests.mjs"
    shutil.copyfile(Path(__file__).parent / "validate-manifests.mjs", script)
    proc = subprocess.run(["node", str(script), str(bad)], capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert "4 objects, 0 valid, 4 invalid" in proc.stdout
    for needle in ("tls/mode must be equal to one of the allowed values", "unknown field /spec/replicass",
                   "lagThreshold must be string", "unknown kind"):
        assert needle in proc.stderr, needle
    proc = subprocess.run(["node", str(script), str(good)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_every_service_knows_where_its_callees_are(rendering):
    """A service gets `<CALLEE>_GRPC_URL` for every service it calls, pointing at that
    service's port, and the gateway gets all nine; AUTH_GRPC_URL (the JWKS) everywhere."""
    for key in WORKLOADS:
        env = {e["name"]: e.get("value") for e in container(rendering.get("Deployment", name(key)))["env"]}
        callees = set(GRPC_SERVICES) if key == "gateway" else {c for c, who in CALLERS.items() if key in who}
        callees.add("auth")
        urls = {n[: -len("_GRPC_URL")].lower() for n in env if n.endswith("_GRPC_URL")}
        assert urls == callees, f"{key}: {sorted(urls)} != {sorted(callees)}"
        for callee in callees:
            assert env[f"{callee.upper()}_GRPC_URL"].startswith(f"http://{name(callee)}."), (key, callee)
