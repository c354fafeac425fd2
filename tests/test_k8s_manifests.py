"""The Kustomize manifests (deploy/k8s/), each variant rendered by `kubectl kustomize`: schema-valid, hardened,
wired together, secret-free, with network policies that let through exactly what the service needs."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml
from bentoml._internal.container.generate import BENTO_UID_GID

from tests.support import require

pytestmark = pytest.mark.deploy

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s"
# The oldest and the newest minor versions GKE offered when this was written.
KUBERNETES_VERSIONS = ("1.30", "1.33")
# BentoML's request timeout (its default `traffic.timeout`): the longest a request in flight may take.
REQUEST_TIMEOUT_SECONDS = 60
# The service's ports: the API, Prometheus, V2 over gRPC (issue #20).
API_PORT, METRICS_PORT, GRPC_PORT = 3000, 3001, 3002
# (database overlay, with the ingress component)
VARIANTS = [("mysql", False), ("mysql", True), ("cloudsql", False), ("cloudsql", True)]
VARIANT_IDS = [f"{database}{'+ingress' if ingress else ''}" for database, ingress in VARIANTS]
NAMESPACE = "drybeans"
NAMESPACE_LABELS = {"kubernetes.io/metadata.name": NAMESPACE}
WORKLOAD_KINDS = {"StatefulSet", "Job", "Deployment"}

Manifest = dict[str, Any]


def render(database: str, ingress: bool, directory: Path) -> list[Manifest]:
    """`kubectl kustomize` over a kustomization naming the overlay (and the component), as deploy.sh writes."""
    require(shutil.which("kubectl") is not None, "kubectl (with its built-in kustomize)")
    directory.mkdir(parents=True, exist_ok=True)
    kustomization: dict[str, Any] = {"resources": [os.path.relpath(K8S / "overlays" / database, directory)]}
    if ingress:
        kustomization["components"] = [os.path.relpath(K8S / "components" / "ingress", directory)]
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization), encoding="utf-8")
    result = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return list(yaml.safe_load_all(result.stdout))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, bool], list[Manifest]]:
    """Every variant, rendered once."""
    root = tmp_path_factory.mktemp("kustomizations")
    return {(database, ingress): render(database, ingress, root / f"{database}-{ingress}")
            for database, ingress in VARIANTS}


@pytest.fixture(params=VARIANTS, ids=VARIANT_IDS)
def variant(request: pytest.FixtureRequest) -> tuple[str, bool]:
    return request.param


@pytest.fixture
def manifests(rendered: dict[tuple[str, bool], list[Manifest]], variant: tuple[str, bool]) -> list[Manifest]:
    return rendered[variant]


def find(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    """The one object of this kind and name; a generated ConfigMap is found by its name without the hash."""
    matches = [m for m in manifests if m["kind"] == kind and base_name(m) == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def base_name(manifest: Manifest) -> str:
    name = manifest["metadata"]["name"]
    return re.sub(r"-[a-z0-9]{10}$", "", name) if manifest["kind"] == "ConfigMap" else name


def pod_spec(workload: Manifest) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: Manifest) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def container(workload: Manifest, name: str) -> dict[str, Any]:
    [match] = [c for c in pod_spec(workload)["containers"] if c["name"] == name]
    return match


def all_containers(workload: Manifest) -> list[dict[str, Any]]:
    return pod_spec(workload).get("initContainers", []) + pod_spec(workload)["containers"]


def workloads(manifests: list[Manifest]) -> list[Manifest]:
    return [m for m in manifests if m["kind"] in WORKLOAD_KINDS]


def env_by_name(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def settings(manifests: list[Manifest], workload: Manifest, name: str) -> dict[str, str]:
    """The environment a container gets from its ConfigMaps (envFrom) and literal values."""
    values: dict[str, str] = {}
    for source in container(workload, name).get("envFrom", []):
        [config_map] = [m for m in manifests if m["kind"] == "ConfigMap" and m["metadata"]["name"] ==
                        source["configMapRef"]["name"]]
        values.update(config_map["data"])
    values.update({k: v["value"] for k, v in env_by_name(container(workload, name)).items() if "value" in v})
    return values


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a Kubernetes LabelSelector (matchLabels + matchExpressions) selects `labels`."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        matched = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not matched:
            return False
    return True


def container_port(workload: Manifest, port: int | str) -> int:
    """A port of the pod by number or by name."""
    if isinstance(port, int):
        return port
    [number] = [p["containerPort"] for c in all_containers(workload) for p in c.get("ports", []) if p["name"] == port]
    return number


# --- NetworkPolicy semantics, as the Kubernetes documentation defines them -----------------------------------
# A peer is either {"ip": "203.0.113.7"} (outside the cluster) or {"namespace": labels, "pod": labels}.


def peer_matches(rule_peer: dict[str, Any], peer: dict[str, Any]) -> bool:
    if "ipBlock" in rule_peer:
        if "ip" not in peer:
            return False
        address = ipaddress.ip_address(peer["ip"])
        block = rule_peer["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(cidr) for cidr in block.get("except", [])
        )
    if "ip" in peer:
        return False
    if "namespaceSelector" in rule_peer:
        namespace_ok = selects(rule_peer["namespaceSelector"], peer["namespace"])
    else:
        namespace_ok = peer["namespace"] == NAMESPACE_LABELS
    return namespace_ok and selects(rule_peer.get("podSelector", {}), peer["pod"])


def rule_covers_port(rule: dict[str, Any], port: int, protocol: str = "TCP") -> bool:
    """Whether a rule's `ports` (absent: every port) include this one."""
    ports = rule.get("ports")
    return ports is None or any(p.get("protocol", "TCP") == protocol and p.get("port") in (None, port) for p in ports)


def rule_allows(rule: dict[str, Any], peers_key: str, peer: dict[str, Any], port: int, protocol: str) -> bool:
    peers = rule.get(peers_key)
    return rule_covers_port(rule, port, protocol) and (
        peers is None or any(peer_matches(rule_peer, peer) for rule_peer in peers))


def policies_of(manifests: list[Manifest], direction: str, pod: dict[str, str]) -> list[dict[str, Any]]:
    """The specs of the NetworkPolicies of this direction that select `pod`."""
    return [m["spec"] for m in manifests if m["kind"] == "NetworkPolicy"
            and selects(m["spec"]["podSelector"], pod) and direction in m["spec"]["policyTypes"]]


def allowed(manifests: list[Manifest], direction: str, pod: dict[str, str], peer: dict[str, Any], port: int,
            protocol: str = "TCP") -> bool:
    """Whether the policies let `pod` (in our namespace) receive from / send to `peer` on `port`."""
    rules_key, peers_key = {"Ingress": ("ingress", "from"), "Egress": ("egress", "to")}[direction]
    policies = policies_of(manifests, direction, pod)
    if not policies:
        return True
    return any(rule_allows(rule, peers_key, peer, port, protocol) for p in policies for rule in p.get(rules_key, []))


def pod_peer(workload: Manifest) -> dict[str, Any]:
    return {"namespace": NAMESPACE_LABELS, "pod": pod_labels(workload)}


INTERNET = {"ip": "203.0.113.7"}
MONITORING = {"namespace": {"kubernetes.io/metadata.name": "monitoring"}, "pod": {"app": "prometheus"}}
OTHER_NAMESPACE = {"namespace": {"kubernetes.io/metadata.name": "default"}, "pod": {"app": "curious"}}
NEIGHBOUR = {"namespace": NAMESPACE_LABELS, "pod": {"app": "neighbour"}}


# --- schema and inventory ---------------------------------------------------------------------------------


def check_managed_certificate(manifest: Manifest) -> None:
    """ManagedCertificate is a GKE CRD without a published schema here: check its structure by hand."""
    assert manifest["apiVersion"] == "networking.gke.io/v1"
    assert set(manifest) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(manifest["spec"]) == {"domains"}
    domains = manifest["spec"]["domains"]
    assert 1 <= len(domains) <= 100
    for domain in domains:
        assert re.fullmatch(r"([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]{2,63}", domain) and len(domain) <= 63, domain


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_is_valid_against_the_kubernetes_openapi_schema(manifests: list[Manifest], version: str) -> None:
    for manifest in manifests:
        if manifest["kind"] == "ManagedCertificate":
            check_managed_certificate(manifest)
        else:
            kubernetes_validate.validate(manifest, version, strict=True)


def test_the_schema_validation_used_above_rejects_a_misspelt_field(rendered: dict[Any, list[Manifest]]) -> None:
    statefulset = find(rendered["cloudsql", False], "StatefulSet", "drybeans")
    broken = {**statefulset, "spec": {**statefulset["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_renders_exactly_the_expected_objects(manifests: list[Manifest], variant: tuple[str, bool]) -> None:
    database, ingress = variant
    expected = {
        ("Namespace", "drybeans"),
        ("ConfigMap", "drybeans-config"),
        ("StatefulSet", "drybeans"),
        ("Service", "drybeans"),
        ("Service", "drybeans-pods"),
        ("HorizontalPodAutoscaler", "drybeans"),
        ("PodDisruptionBudget", "drybeans"),
        ("Job", "drybeans-migrate"),
        ("NetworkPolicy", "drybeans-server"),
        ("NetworkPolicy", "drybeans-migration"),
        ("NetworkPolicy", "drybeans-egress-dns"),
        ("NetworkPolicy", "drybeans-egress-database"),
    }
    expected |= {
        "mysql": {("ConfigMap", "drybeans-mysql-init"), ("StatefulSet", "drybeans-mysql"),
                  ("Service", "drybeans-mysql"), ("NetworkPolicy", "drybeans-mysql")},
        "cloudsql": {("ConfigMap", "drybeans-cloudsql"), ("ServiceAccount", "drybeans")},
    }[database]
    if ingress:
        expected |= {("Ingress", "drybeans"), ("ManagedCertificate", "drybeans")}
    assert sorted((m["kind"], base_name(m)) for m in manifests) == sorted(expected)


def test_every_object_is_in_the_namespace_and_labelled_with_its_component(manifests: list[Manifest]) -> None:
    for manifest in manifests:
        labels = manifest["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "drybeans", manifest["metadata"]["name"]
        assert labels["app.kubernetes.io/component"], manifest["metadata"]["name"]
        if manifest["kind"] != "Namespace":
            assert manifest["metadata"]["namespace"] == NAMESPACE, manifest["metadata"]["name"]


def test_every_reference_to_a_config_map_or_service_account_resolves(manifests: list[Manifest]) -> None:
    config_maps = {m["metadata"]["name"] for m in manifests if m["kind"] == "ConfigMap"}
    accounts = {m["metadata"]["name"] for m in manifests if m["kind"] == "ServiceAccount"}
    for workload in workloads(manifests):
        text = yaml.safe_dump(pod_spec(workload))
        for name in re.findall(r"configMapKeyRef:\n\s+key: \S+\n\s+name: (\S+)", text):
            assert name in config_maps
        for c in all_containers(workload):
            for source in c.get("envFrom", []):
                assert source["configMapRef"]["name"] in config_maps
        for volume in pod_spec(workload).get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps
        if "serviceAccountName" in pod_spec(workload):
            assert pod_spec(workload)["serviceAccountName"] in accounts


# --- hardening, every container (MySQL and the proxy too) -------------------------------------------------


def test_every_container_runs_non_root_read_only_without_capabilities(manifests: list[Manifest]) -> None:
    checked = 0
    for workload in workloads(manifests):
        pod_security = pod_spec(workload)["securityContext"]
        assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod_spec(workload)["automountServiceAccountToken"] is False
        for c in all_containers(workload):
            security = c["securityContext"]
            assert {**pod_security, **security}.get("runAsNonRoot") is True, c["name"]
            assert {**pod_security, **security}.get("runAsUser", 0) > 0, c["name"]
            assert security["readOnlyRootFilesystem"] is True, c["name"]
            assert security["allowPrivilegeEscalation"] is False, c["name"]
            assert security["capabilities"] == {"drop": ["ALL"]}, c["name"]
            checked += 1
    assert checked >= 3


def test_every_container_has_cpu_and_memory_requests_and_limits(manifests: list[Manifest]) -> None:
    for workload in workloads(manifests):
        for c in all_containers(workload):
            for bound in ("requests", "limits"):
                assert set(c["resources"][bound]) == {"cpu", "memory"}, (c["name"], bound)


def test_bentoml_pods_run_as_the_uid_bentoml_builds_its_image_user_with(manifests: list[Manifest]) -> None:
    for name, kind in (("drybeans", "StatefulSet"), ("drybeans-migrate", "Job")):
        assert pod_spec(find(manifests, kind, name))["securityContext"]["runAsUser"] == BENTO_UID_GID == 1034


def mounted_paths(workload: Manifest, name: str) -> dict[str, str]:
    return {m["mountPath"]: m["name"] for m in container(workload, name)["volumeMounts"]}


def test_every_directory_bentoml_writes_is_a_mounted_volume(manifests: list[Manifest]) -> None:
    for kind, name, container_name in (("StatefulSet", "drybeans", "server"), ("Job", "drybeans-migrate", "migrate")):
        workload = find(manifests, kind, name)
        mounts = mounted_paths(workload, container_name)
        # BentoML writes under BENTOML_HOME (bentos/, models/, envs/, tmp/, prometheus_multiproc_dir/) and /tmp.
        assert {"/tmp", settings(manifests, workload, container_name)["BENTOML_HOME"]} <= set(mounts)
        empty_dirs = {v["name"] for v in pod_spec(workload)["volumes"] if "emptyDir" in v}
        claims = {t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])}
        writable = {m["name"] for m in container(workload, container_name)["volumeMounts"] if not m.get("readOnly")}
        assert writable <= empty_dirs | claims


# --- the service's StatefulSet ------------------------------------------------------------------------------


@pytest.fixture
def server(manifests: list[Manifest]) -> Manifest:
    return find(manifests, "StatefulSet", "drybeans")


@pytest.fixture
def job(manifests: list[Manifest]) -> Manifest:
    return find(manifests, "Job", "drybeans-migrate")


def test_the_spool_is_a_retained_volume_claim_mounted_at_the_spool_dir(
    manifests: list[Manifest], server: Manifest
) -> None:
    [claim] = server["spec"]["volumeClaimTemplates"]
    config = settings(manifests, server, "server")
    assert mounted_paths(server, "server")[config["DRYBEANS_SPOOL_DIR"]] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    size = claim["spec"]["resources"]["requests"]["storage"]
    assert re.fullmatch(r"\d+Gi", size) and int(size[:-2]) * 2**30 > int(config["DRYBEANS_SPOOL_MAX_BYTES"])
    # A scaled-away or deleted StatefulSet leaves its claims, and so the records spooled on them.
    assert server["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenScaled": "Retain", "whenDeleted": "Retain"}
    assert server["spec"]["podManagementPolicy"] == "Parallel"


def test_the_grace_period_covers_prestop_the_longest_request_and_the_spool_drain(
    manifests: list[Manifest], server: Manifest
) -> None:
    pre_stop = container(server, "server")["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = float(settings(manifests, server, "server")["DRYBEANS_SHUTDOWN_DRAIN_SECONDS"])
    grace = pod_spec(server)["terminationGracePeriodSeconds"]
    assert grace >= pre_stop + REQUEST_TIMEOUT_SECONDS + drain
    assert pre_stop >= 5, "endpoints must drop the pod before it stops accepting"


def test_service_ports_probes_and_settings(manifests: list[Manifest], server: Manifest) -> None:
    server_container = container(server, "server")
    assert {p["name"]: p["containerPort"] for p in server_container["ports"]} == {
        "http": API_PORT, "metrics": METRICS_PORT, "grpc": GRPC_PORT}
    assert server_container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert server_container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert server_container["startupProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert server_container[probe]["timeoutSeconds"] > 0
    config = settings(manifests, server, "server")
    assert config["DRYBEANS_METRICS_PORT"] == "3001"
    assert config["DRYBEANS_MIGRATE_ON_STARTUP"] == "false"
    assert "DRYBEANS_MODELS" not in config, "every model the image's Bento carries; the database names the champion"
    assert pod_spec(server)["enableServiceLinks"] is False
    env = env_by_name(server_container)
    assert env["MYSQL_USER"]["value"] == "drybeans_app"
    assert env["MYSQL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "drybeans-db", "key": "app-password"}
    assert env["DRYBEANS_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "drybeans-api", "key": "token"}


def test_the_tokens_file_is_the_secrets_file_mounted_read_only_as_a_directory(
    manifests: list[Manifest], server: Manifest
) -> None:
    """Issue #21: named, scoped tokens from the Secret drybeans-tokens (key `tokens`). Its directory is mounted, not
    the file through subPath, so the kubelet's update of the Secret reaches the file and the service re-reads it."""
    path = PurePosixPath(settings(manifests, server, "server")["DRYBEANS_TOKENS_FILE"])
    [mount] = [m for m in container(server, "server")["volumeMounts"] if m["mountPath"] == str(path.parent)]
    assert mount["readOnly"] is True and "subPath" not in mount
    [volume] = [v for v in pod_spec(server)["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "drybeans-tokens" and "items" not in volume["secret"]
    assert path.name == "tokens"
    assert volume["secret"]["defaultMode"] == 0o440, "read by the pod's group (fsGroup) only"
    assert "optional" not in volume["secret"], "the service would not start without the file"


def test_the_autoscaler_owns_the_statefulsets_replica_count(manifests: list[Manifest], server: Manifest) -> None:
    assert "replicas" not in server["spec"]
    autoscaler = find(manifests, "HorizontalPodAutoscaler", "drybeans")
    assert autoscaler["apiVersion"] == "autoscaling/v2"
    assert autoscaler["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "drybeans"}
    assert 1 <= autoscaler["spec"]["minReplicas"] <= autoscaler["spec"]["maxReplicas"]
    # Scale-down one pod at a time: each leaving pod drains its spool first.
    [scale_down] = autoscaler["spec"]["behavior"]["scaleDown"]["policies"]
    assert scale_down == {"type": "Pods", "value": 1, "periodSeconds": 60}
    budget = find(manifests, "PodDisruptionBudget", "drybeans")
    assert selects(budget["spec"]["selector"], pod_labels(server))
    assert budget["spec"]["maxUnavailable"] == 1


def test_the_public_service_exposes_the_api_and_grpc_ports_only(
    manifests: list[Manifest], server: Manifest, job: Manifest
) -> None:
    public = find(manifests, "Service", "drybeans")
    assert public["spec"]["type"] == "ClusterIP"
    assert [(p["port"], container_port(server, p["targetPort"])) for p in public["spec"]["ports"]] == [
        (80, API_PORT), (GRPC_PORT, GRPC_PORT)]
    assert selects({"matchLabels": public["spec"]["selector"]}, pod_labels(server))
    assert not selects({"matchLabels": public["spec"]["selector"]}, pod_labels(job))
    headless = find(manifests, "Service", "drybeans-pods")
    assert headless["spec"]["clusterIP"] == "None"
    assert server["spec"]["serviceName"] == "drybeans-pods"
    assert {container_port(server, p["targetPort"]) for p in headless["spec"]["ports"]} == {
        API_PORT, METRICS_PORT, GRPC_PORT}


def test_the_server_serves_v2_over_grpc_on_3002(manifests: list[Manifest], server: Manifest) -> None:
    """Issue #20: the setting, the container port named grpc, and both Services, as HTTP/2 in clear (h2c)."""
    assert settings(manifests, server, "server")["DRYBEANS_GRPC_PORT"] == str(GRPC_PORT)
    [declared] = [p for p in container(server, "server")["ports"] if p["containerPort"] == GRPC_PORT]
    assert declared == {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"}
    for name in ("drybeans", "drybeans-pods"):
        service = find(manifests, "Service", name)
        assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(server))
        [port] = [p for p in service["spec"]["ports"] if container_port(server, p["targetPort"]) == GRPC_PORT]
        assert (port["port"], port["protocol"]) == (GRPC_PORT, "TCP"), name
        assert port.get("appProtocol") == "kubernetes.io/h2c" or port["name"] == "grpc", name


# --- access control (issue #19, case 14) ------------------------------------------------------------------------


def test_every_variant_requires_the_token(manifests: list[Manifest], server: Manifest) -> None:
    """The pod cannot start without the Secret's token (no `optional`), nor the service without a token."""
    token = env_by_name(container(server, "server"))["DRYBEANS_API_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token == {"name": "drybeans-api", "key": "token"}, "optional: true would start pods without it"
    assert settings(manifests, server, "server")["DRYBEANS_REQUIRE_TOKEN"] == "true"


def test_predictions_need_the_token_where_the_service_is_public(manifests: list[Manifest], server: Manifest,
                                                                variant: tuple[str, bool]) -> None:
    _, ingress = variant
    public = ingress  # the Ingress is the only way in from outside the cluster
    assert settings(manifests, server, "server")["DRYBEANS_PROTECT_PREDICT"] == ("true" if public else "false")


def test_nothing_is_served_outside_the_cluster_but_over_https(manifests: list[Manifest]) -> None:
    """No Service of type LoadBalancer or NodePort, in any variant: the Ingress, HTTPS only, is the one way in."""
    for service in (m for m in manifests if m["kind"] == "Service"):
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", service["metadata"]["name"]
    for ingress in (m for m in manifests if m["kind"] == "Ingress"):
        annotations = ingress["metadata"]["annotations"]
        assert annotations["kubernetes.io/ingress.allow-http"] == "false"
        assert annotations["networking.gke.io/managed-certificates"]


# --- network policies -----------------------------------------------------------------------------------------


def test_the_service_takes_the_api_from_anyone_and_metrics_only_from_monitoring(
    manifests: list[Manifest], server: Manifest
) -> None:
    pod = pod_labels(server)
    for peer in (INTERNET, OTHER_NAMESPACE, NEIGHBOUR, MONITORING):
        assert allowed(manifests, "Ingress", pod, peer, 3000)
    assert allowed(manifests, "Ingress", pod, MONITORING, 3001)
    for peer in (INTERNET, OTHER_NAMESPACE, NEIGHBOUR):
        assert not allowed(manifests, "Ingress", pod, peer, 3001)
    for port in (22, 3306, 9090):
        assert not allowed(manifests, "Ingress", pod, INTERNET, port)


def test_nothing_may_connect_to_the_migration(manifests: list[Manifest], job: Manifest) -> None:
    for peer in (INTERNET, NEIGHBOUR, MONITORING):
        for port in (3000, 3306, 9090):
            assert not allowed(manifests, "Ingress", pod_labels(job), peer, port)


def test_the_service_and_migration_reach_only_dns_and_the_database(
    manifests: list[Manifest], server: Manifest, job: Manifest, variant: tuple[str, bool]
) -> None:
    database, _ = variant
    for pod in (pod_labels(server), pod_labels(job)):
        assert allowed(manifests, "Egress", pod, {"ip": "10.8.0.10"}, 53, "UDP")
        assert allowed(manifests, "Egress", pod, {"ip": "10.8.0.10"}, 53, "TCP")
        for port in (22, 25, 5432, 8080):
            assert not allowed(manifests, "Egress", pod, INTERNET, port)
        assert not allowed(manifests, "Egress", pod, NEIGHBOUR, 3306)
        if database == "mysql":
            mysql = pod_peer(find(manifests, "StatefulSet", "drybeans-mysql"))
            assert allowed(manifests, "Egress", pod, mysql, 3306)
            for port in (443, 3307):
                assert not allowed(manifests, "Egress", pod, INTERNET, port)
            assert not allowed(manifests, "Egress", pod, INTERNET, 3306)
        else:
            # The proxy: the Cloud SQL Admin API, the instance's TLS port, and the GKE metadata server.
            assert allowed(manifests, "Egress", pod, INTERNET, 443)
            assert allowed(manifests, "Egress", pod, {"ip": "10.20.0.3"}, 3307)
            assert allowed(manifests, "Egress", pod, {"ip": "169.254.169.254"}, 80)
            assert allowed(manifests, "Egress", pod, {"ip": "169.254.169.252"}, 988)
            assert not allowed(manifests, "Egress", pod, {"ip": "10.20.0.3"}, 3306)


def test_only_the_service_and_migration_pods_reach_mysql_on_3306(
    rendered: dict[Any, list[Manifest]],
) -> None:
    manifests = rendered["mysql", False]
    mysql = pod_labels(find(manifests, "StatefulSet", "drybeans-mysql"))
    for client in (find(manifests, "StatefulSet", "drybeans"), find(manifests, "Job", "drybeans-migrate")):
        assert allowed(manifests, "Ingress", mysql, pod_peer(client), 3306)
        assert not allowed(manifests, "Ingress", mysql, pod_peer(client), 22)
    intruder = {"namespace": NAMESPACE_LABELS, "pod": {"app.kubernetes.io/name": "intruder",
                                                       "app.kubernetes.io/component": "server"}}
    for peer in (INTERNET, NEIGHBOUR, OTHER_NAMESPACE, MONITORING, intruder):
        assert not allowed(manifests, "Ingress", mysql, peer, 3306)


def test_grpc_is_admitted_from_exactly_whom_the_api_is(manifests: list[Manifest], server: Manifest,
                                                      job: Manifest) -> None:
    """Issue #20: 3002 follows 3000's rules, not the metrics port's. Rule by rule, a rule of a policy on the
    service's pods admits 3002 exactly when it admits 3000, so both have the same peers, whoever they are."""
    pod = pod_labels(server)
    rules = [rule for policy in policies_of(manifests, "Ingress", pod) for rule in policy.get("ingress", [])]
    assert rules, "the service's pods must have an ingress policy"
    for rule in rules:
        assert rule_covers_port(rule, GRPC_PORT) == rule_covers_port(rule, API_PORT), rule
        assert not rule_covers_port(rule, GRPC_PORT, "UDP"), rule
    for peer in (INTERNET, OTHER_NAMESPACE, NEIGHBOUR, MONITORING, pod_peer(job)):
        assert allowed(manifests, "Ingress", pod, peer, GRPC_PORT)
        assert allowed(manifests, "Ingress", pod, peer, GRPC_PORT) == allowed(manifests, "Ingress", pod, peer,
                                                                              API_PORT)


# --- MySQL (quick start) ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mysql_manifests(rendered: dict[Any, list[Manifest]]) -> list[Manifest]:
    return rendered["mysql", False]


def test_mysql_runs_as_its_image_user_with_writable_volumes_only_where_it_writes(
    mysql_manifests: list[Manifest],
) -> None:
    statefulset = find(mysql_manifests, "StatefulSet", "drybeans-mysql")
    mysql = container(statefulset, "mysql")
    assert mysql["image"] == "mysql:8.4"
    assert pod_spec(statefulset)["securityContext"]["runAsUser"] == 999
    assert pod_spec(statefulset)["securityContext"]["fsGroup"] == 999
    mounts = mounted_paths(statefulset, "mysql")
    [claim] = statefulset["spec"]["volumeClaimTemplates"]
    assert mounts["/var/lib/mysql"] == claim["metadata"]["name"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    # The data in a sub-directory of the claim (not its root, where lost+found is), created by mysqld itself.
    assert "--datadir=/var/lib/mysql/data" in mysql["args"]
    assert not any("subPath" in m for m in mysql["volumeMounts"])
    empty_dirs = {v["name"] for v in pod_spec(statefulset)["volumes"] if "emptyDir" in v}
    assert {mounts["/var/run/mysqld"], mounts["/tmp"]} <= empty_dirs
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert mysql[probe]["exec"]["command"][:2] == ["mysqladmin", "ping"]


def test_mysql_is_reached_through_a_headless_service_at_the_configured_host(mysql_manifests: list[Manifest]) -> None:
    statefulset = find(mysql_manifests, "StatefulSet", "drybeans-mysql")
    service = find(mysql_manifests, "Service", "drybeans-mysql")
    assert service["spec"]["clusterIP"] == "None"
    assert statefulset["spec"]["serviceName"] == "drybeans-mysql"
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(statefulset))
    server = find(mysql_manifests, "StatefulSet", "drybeans")
    assert settings(mysql_manifests, server, "server")["MYSQL_HOST"] == "drybeans-mysql"
    assert [p["port"] for p in service["spec"]["ports"]] == [3306]


def test_mysql_gets_its_passwords_from_the_secret_and_its_users_script_from_a_config_map(
    mysql_manifests: list[Manifest],
) -> None:
    statefulset = find(mysql_manifests, "StatefulSet", "drybeans-mysql")
    env = env_by_name(container(statefulset, "mysql"))
    assert env["MYSQL_DATABASE"]["value"] == "drybeans"
    assert env["DRYBEANS_APP_DB_USER"]["value"] == "drybeans_app"
    assert env["DRYBEANS_MIGRATOR_DB_USER"]["value"] == "drybeans_migrator"
    assert "MYSQL_USER" not in env, "the image would create a third user with ALL on the database"
    secret_keys = {name: e["valueFrom"]["secretKeyRef"]["key"] for name, e in env.items() if "valueFrom" in e}
    assert secret_keys == {
        "MYSQL_ROOT_PASSWORD": "mysql-root-password",
        "DRYBEANS_APP_DB_PASSWORD": "app-password",
        "DRYBEANS_MIGRATOR_DB_PASSWORD": "migrator-password",
    }
    init_volume = mounted_paths(statefulset, "mysql")["/docker-entrypoint-initdb.d"]
    [config_map_name] = [v["configMap"]["name"] for v in pod_spec(statefulset)["volumes"] if v["name"] == init_volume]
    [init_map] = [m for m in mysql_manifests if m["metadata"]["name"] == config_map_name]
    script = (K8S / "overlays" / "mysql" / "mysql-init.sh").read_text(encoding="utf-8")
    assert init_map["data"] == {"create-users.sh": script}


def run_init_script(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Source the init script the way the mysql image's entrypoint does, printing the SQL it sends.

    `docker_process_sql` is the image's helper that pipes SQL into the mysql client; here it
    prints its arguments and the SQL instead, since no MySQL server runs in this test.
    """
    harness = 'set -eo pipefail\ndocker_process_sql() { echo "-- args: $*"; cat; }\n. /dev/stdin\n'
    return subprocess.run(
        ["bash", "-c", harness],
        input=script,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        check=False,
    )


INIT_SCRIPT = K8S / "overlays" / "mysql" / "mysql-init.sh"
INIT_ENV = {
    "MYSQL_DATABASE": "drybeans",
    "DRYBEANS_APP_DB_USER": "drybeans_app",
    "DRYBEANS_APP_DB_PASSWORD": "it's a \\ tricky $(pass)",
    "DRYBEANS_MIGRATOR_DB_USER": "drybeans_migrator",
    "DRYBEANS_MIGRATOR_DB_PASSWORD": "migrator-pw",
}


def test_init_script_creates_a_bare_app_user_and_a_migrator_owning_the_database() -> None:
    result = run_init_script(INIT_SCRIPT.read_text(encoding="utf-8"), INIT_ENV)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "-- args: --database=mysql",
        "CREATE USER IF NOT EXISTS 'drybeans_app'@'%' IDENTIFIED BY 'it''s a \\\\ tricky $(pass)';",
        "CREATE USER IF NOT EXISTS 'drybeans_migrator'@'%' IDENTIFIED BY 'migrator-pw';",
        "GRANT ALL PRIVILEGES ON `drybeans`.* TO 'drybeans_migrator'@'%' WITH GRANT OPTION;",
    ]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DRYBEANS_APP_DB_USER", "app'; DROP USER root; --", "DRYBEANS_APP_DB_USER must be 1-32 letters"),
        ("DRYBEANS_MIGRATOR_DB_PASSWORD", "", "set DRYBEANS_MIGRATOR_DB_PASSWORD"),
    ],
)
def test_init_script_fails_with_a_clear_message_on_bad_input(variable: str, value: str, message: str) -> None:
    result = run_init_script(INIT_SCRIPT.read_text(encoding="utf-8"), {**INIT_ENV, variable: value})
    assert result.returncode != 0
    assert message in result.stderr
    assert "CREATE USER" not in result.stdout


# --- Cloud SQL (production) -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cloudsql_manifests(rendered: dict[Any, list[Manifest]]) -> list[Manifest]:
    return rendered["cloudsql", False]


PROXY_FLAGS = {"--private-ip", "--structured-logs", "--health-check", "--http-address=0.0.0.0", "--http-port=9090",
               "--port=3306"}


@pytest.mark.parametrize(("kind", "name", "app_container"),
                         [("StatefulSet", "drybeans", "server"), ("Job", "drybeans-migrate", "migrate")])
def test_the_proxy_is_a_native_sidecar_the_app_reaches_on_localhost(
    cloudsql_manifests: list[Manifest], kind: str, name: str, app_container: str
) -> None:
    workload = find(cloudsql_manifests, kind, name)
    [proxy] = pod_spec(workload)["initContainers"]
    assert proxy["name"] == "cloud-sql-proxy"
    assert proxy["restartPolicy"] == "Always"
    assert re.fullmatch(r"gcr\.io/cloud-sql-connectors/cloud-sql-proxy:2\.\d+\.\d+", proxy["image"])
    assert set(proxy["args"]) >= PROXY_FLAGS
    # The instance connection name, from the ConfigMap deploy.sh fills in.
    assert proxy["args"][-1] == "$(INSTANCE_CONNECTION_NAME)"
    assert env_by_name(proxy)["INSTANCE_CONNECTION_NAME"]["valueFrom"]["configMapKeyRef"]["key"] == (
        "instance-connection-name"
    )
    probes = {"startupProbe": "/startup", "livenessProbe": "/liveness", "readinessProbe": "/readiness"}
    for probe, path in probes.items():
        assert proxy[probe]["httpGet"]["path"] == path
        assert container_port(workload, proxy[probe]["httpGet"]["port"]) == 9090
    config = settings(cloudsql_manifests, workload, app_container)
    assert (config["MYSQL_HOST"], config["MYSQL_PORT"]) == ("127.0.0.1", "3306")
    assert pod_spec(workload)["serviceAccountName"] == "drybeans"


def test_the_migration_pod_finishes_when_its_migration_does(cloudsql_manifests: list[Manifest]) -> None:
    # A Job's pod completes when its regular containers have exited; native sidecars are then stopped. So the
    # only regular container must be the migration, and everything long-running a restartable init container.
    job = find(cloudsql_manifests, "Job", "drybeans-migrate")
    assert [c["name"] for c in pod_spec(job)["containers"]] == ["migrate"]
    assert all(c.get("restartPolicy") == "Always" for c in pod_spec(job)["initContainers"])
    assert pod_spec(job)["restartPolicy"] == "Never"
    assert "--exit-zero-on-sigterm" in pod_spec(job)["initContainers"][0]["args"]
    assert job["spec"]["activeDeadlineSeconds"] > 0


def test_the_service_account_is_annotated_for_workload_identity(cloudsql_manifests: list[Manifest]) -> None:
    account = find(cloudsql_manifests, "ServiceAccount", "drybeans")
    email = account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
    assert re.fullmatch(r"[a-z][-a-z0-9]+@[A-Z]+\.iam\.gserviceaccount\.com", email), "a placeholder deploy.sh replaces"


def test_the_mysql_overlay_has_no_proxy_and_cloudsql_no_mysql(rendered: dict[Any, list[Manifest]]) -> None:
    for workload in workloads(rendered["mysql", False]):
        assert "initContainers" not in pod_spec(workload)
    assert not [m for m in rendered["cloudsql", False] if "mysql" in m["metadata"]["name"]]


# --- the ingress component ----------------------------------------------------------------------------------


@pytest.mark.parametrize("database", ["mysql", "cloudsql"])
def test_the_ingress_serves_https_only_to_the_api_port(rendered: dict[Any, list[Manifest]], database: str) -> None:
    manifests = rendered[database, True]
    ingress = find(manifests, "Ingress", "drybeans")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["networking.gke.io/managed-certificates"] == find(manifests, "ManagedCertificate", "drybeans")[
        "metadata"]["name"]
    assert annotations["kubernetes.io/ingress.allow-http"] == "false"
    assert annotations["kubernetes.io/ingress.global-static-ip-name"] == "drybeans-ip"
    backend = ingress["spec"]["defaultBackend"]["service"]
    assert backend == {"name": "drybeans", "port": {"name": "http"}}
    assert "rules" not in ingress["spec"]
    public = find(manifests, "Service", "drybeans")
    assert public["metadata"]["annotations"]["cloud.google.com/neg"] == '{"ingress": true}'
    # gRPC is on the Service, for the cluster, but not behind the Ingress (see docs/deployment.md: GKE's load balancer
    # reaches a pod over HTTP/2 only with TLS): no backend for it, no HTTP/2 backend protocol.
    assert [p["name"] for p in public["spec"]["ports"]] == ["http", "grpc"]
    assert "cloud.google.com/app-protocols" not in public["metadata"]["annotations"]


# --- the migration Job ------------------------------------------------------------------------------------------


def test_migration_job_runs_db_migrate_as_the_migrator_from_the_bento_src_dir(
    manifests: list[Manifest], job: Manifest, server: Manifest
) -> None:
    migrate = container(job, "migrate")
    assert migrate["args"] == ["python", "-m", "db.migrate"]
    assert "command" not in migrate, "the image's entrypoint must run first to activate its virtualenv"
    assert migrate["workingDir"] == "/home/bentoml/bento/src"
    assert migrate["image"] == container(server, "server")["image"]
    env = env_by_name(migrate)
    assert env["MYSQL_USER"]["value"] == "drybeans_migrator"
    assert env["MYSQL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"key": "migrator-password", "name": "drybeans-db"}
    assert env["DRYBEANS_APP_DB_USER"]["value"] == "drybeans_app"
    assert settings(manifests, job, "migrate")["MYSQL_HOST"] == settings(manifests, server, "server")["MYSQL_HOST"]


# --- secrets ------------------------------------------------------------------------------------------------------


def test_no_secret_value_is_rendered(manifests: list[Manifest]) -> None:
    assert not [m for m in manifests if m["kind"] == "Secret"]
    for workload in workloads(manifests):
        for c in all_containers(workload):
            for name, entry in env_by_name(c).items():
                if "PASSWORD" in name or "TOKEN" in name:
                    assert "value" not in entry, f"{name} has a literal value"
                    assert entry["valueFrom"]["secretKeyRef"]["name"] in {"drybeans-db", "drybeans-api"}
        for volume in pod_spec(workload).get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] == "drybeans-tokens"
    for config_map in (m for m in manifests if m["kind"] == "ConfigMap"):
        # A switch about the token (DRYBEANS_REQUIRE_TOKEN=true) or the path of a mounted file
        # (DRYBEANS_TOKENS_FILE) is not a secret; anything else named so is.
        assert not [key for key, value in config_map["data"].items()
                    if re.search("PASSWORD|TOKEN|SECRET", key, re.IGNORECASE) and value not in ("true", "false")
                    and not (key.endswith("_FILE") and value.startswith("/"))]
