"""The generated Kubernetes manifests: schema-valid, hardened, wired together, secret-free, deterministic."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from bentoml._internal.container.generate import BENTO_UID_GID

from deploy.k8s import render
from tests.support import require

REPO = Path(__file__).resolve().parents[1]
# The oldest and the newest minor versions GKE offered when this was written.
KUBERNETES_VERSIONS = ("1.30", "1.33")
PASSWORD_SENTINELS = {
    "DRYBEANS_MYSQL_ROOT_PASSWORD": "sentinel-root-pw-7f3a",
    "DRYBEANS_APP_DB_PASSWORD": "sentinel-app-pw-91c2",
    "DRYBEANS_MIGRATOR_DB_PASSWORD": "sentinel-migrator-pw-44d8",
    "MYSQL_PASSWORD": "sentinel-mysql-pw-0b19",
}

Manifest = dict[str, Any]


def run_render(*args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the generator's command line from the repository root."""
    env = {**os.environ, **(extra_env or {})}
    return subprocess.run(
        [sys.executable, "-m", "deploy.k8s.render", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def find(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    matches = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def pod_spec(workload: Manifest) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def only_container(workload: Manifest) -> dict[str, Any]:
    containers = pod_spec(workload)["containers"]
    assert len(containers) == 1
    return containers[0]


def pod_labels(workload: Manifest) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def env_by_name(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env", [])}


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


@pytest.fixture(scope="module")
def config() -> render.Config:
    return render.load_config(render.DEFAULT_CONFIG)


@pytest.fixture(scope="module")
def stdout_yaml() -> str:
    result = run_render()
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def manifests(stdout_yaml: str) -> list[Manifest]:
    """The objects as a reader of the CLI's output sees them (parsed back from YAML)."""
    return list(yaml.safe_load_all(stdout_yaml))


@pytest.fixture(scope="module")
def deployment(manifests: list[Manifest]) -> Manifest:
    return find(manifests, "Deployment", "drybeans")


@pytest.fixture(scope="module")
def statefulset(manifests: list[Manifest]) -> Manifest:
    return find(manifests, "StatefulSet", "drybeans-mysql")


@pytest.fixture(scope="module")
def job(manifests: list[Manifest]) -> Manifest:
    return find(manifests, "Job", "drybeans-migrate")


@pytest.fixture(scope="module")
def app_config(manifests: list[Manifest]) -> dict[str, str]:
    return find(manifests, "ConfigMap", "drybeans-config")["data"]


# --- schema and inventory -------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_document_is_valid_against_the_kubernetes_openapi_schema(manifests: list[Manifest], version: str) -> None:
    for manifest in manifests:
        kubernetes_validate.validate(manifest, version, strict=True)


def test_the_schema_validation_used_above_rejects_a_misspelt_field(deployment: Manifest) -> None:
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_renders_exactly_the_expected_objects_with_their_api_versions(manifests: list[Manifest]) -> None:
    inventory = {(m["apiVersion"], m["kind"], m["metadata"]["name"]) for m in manifests}
    assert inventory == {
        ("v1", "Namespace", "drybeans"),
        ("v1", "ConfigMap", "drybeans-config"),
        ("v1", "ConfigMap", "drybeans-mysql-init"),
        ("v1", "Service", "drybeans"),
        ("v1", "Service", "drybeans-mysql"),
        ("networking.k8s.io/v1", "NetworkPolicy", "drybeans-mysql"),
        ("apps/v1", "StatefulSet", "drybeans-mysql"),
        ("batch/v1", "Job", "drybeans-migrate"),
        ("apps/v1", "Deployment", "drybeans"),
        ("autoscaling/v2", "HorizontalPodAutoscaler", "drybeans"),
        ("policy/v1", "PodDisruptionBudget", "drybeans"),
    }
    assert len(manifests) == len(inventory)


def test_every_namespaced_object_is_in_the_configured_namespace(
    manifests: list[Manifest], config: render.Config
) -> None:
    for manifest in manifests:
        if manifest["kind"] != "Namespace":
            assert manifest["metadata"]["namespace"] == config.namespace, manifest["metadata"]["name"]


# --- the service's Deployment ---------------------------------------------------------------


def test_service_probes_livez_and_readyz_on_port_3000_with_timeouts(
    deployment: Manifest, config: render.Config
) -> None:
    container = only_container(deployment)
    assert {port["name"]: port["containerPort"] for port in container["ports"]} == {"http": 3000}
    probes = {kind: container[kind] for kind in ("livenessProbe", "readinessProbe", "startupProbe")}
    assert probes["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert probes["startupProbe"]["httpGet"]["path"] == "/livez"
    for probe in probes.values():
        assert probe["httpGet"]["port"] == "http"
        assert probe["timeoutSeconds"] == config.service.probe_timeout_seconds
        assert probe["periodSeconds"] > 0
        assert probe["failureThreshold"] > 0


def test_every_container_has_cpu_and_memory_requests_and_limits(manifests: list[Manifest]) -> None:
    workloads = [m for m in manifests if m["kind"] in {"Deployment", "StatefulSet", "Job"}]
    assert len(workloads) == 3
    for workload in workloads:
        for container in pod_spec(workload)["containers"]:
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) == {"cpu", "memory"}, (workload["kind"], bound)


def test_service_resources_come_from_the_config(deployment: Manifest, config: render.Config) -> None:
    assert only_container(deployment)["resources"] == config.service.resources.model_dump()


def test_configured_uid_is_the_one_bentoml_builds_its_image_user_with(config: render.Config) -> None:
    # BentoML's Dockerfile templates default BENTO_USER_UID to this constant.
    assert config.service.run_as_user == BENTO_UID_GID == 1034


@pytest.mark.parametrize("workload_name", ["deployment", "job"])
def test_bentoml_pods_run_as_the_images_non_root_uid_with_a_read_only_root(
    workload_name: str, request: pytest.FixtureRequest, config: render.Config
) -> None:
    workload = request.getfixturevalue(workload_name)
    security = pod_spec(workload)["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == config.service.run_as_user
    container_security = only_container(workload)["securityContext"]
    assert container_security["readOnlyRootFilesystem"] is True
    assert container_security["allowPrivilegeEscalation"] is False
    assert container_security["capabilities"] == {"drop": ["ALL"]}


@pytest.mark.parametrize("workload_name", ["deployment", "job"])
def test_every_directory_written_at_run_time_is_a_mounted_emptydir(
    workload_name: str, request: pytest.FixtureRequest, app_config: dict[str, str]
) -> None:
    workload = request.getfixturevalue(workload_name)
    empty_dirs = {volume["name"] for volume in pod_spec(workload)["volumes"] if "emptyDir" in volume}
    mounts = {mount["mountPath"]: mount["name"] for mount in only_container(workload)["volumeMounts"]}
    assert set(mounts.values()) <= empty_dirs
    # BentoML writes under BENTOML_HOME (bentos/, models/, envs/, tmp/, prometheus_multiproc_dir/)
    # and in /tmp; the service spools under DRYBEANS_SPOOL_DIR.
    assert {"/tmp", app_config["BENTOML_HOME"], app_config["DRYBEANS_SPOOL_DIR"]} <= set(mounts)


def test_service_reads_its_settings_from_the_config_map_and_its_password_from_the_secret(
    deployment: Manifest, app_config: dict[str, str], config: render.Config
) -> None:
    assert app_config == {
        "BENTOML_HOME": "/var/lib/bentoml",
        "DRYBEANS_MAX_BEANS_PER_REQUEST": "10000",
        "DRYBEANS_MIGRATE_ON_STARTUP": "false",
        "DRYBEANS_SPOOL_DIR": "/var/spool/drybeans",
        "MYSQL_DB": config.mysql.database,
        "MYSQL_HOST": "drybeans-mysql",
        "MYSQL_PORT": "3306",
    }
    container = only_container(deployment)
    assert container["envFrom"] == [{"configMapRef": {"name": "drybeans-config"}}]
    env = env_by_name(container)
    assert env["MYSQL_USER"]["value"] == config.mysql.app_user
    assert env["MYSQL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"key": "app-password", "name": "drybeans-db"}
    assert pod_spec(deployment)["enableServiceLinks"] is False


def test_deployment_leaves_the_replica_count_to_the_autoscaler(
    manifests: list[Manifest], deployment: Manifest, config: render.Config
) -> None:
    assert "replicas" not in deployment["spec"]
    autoscaler = find(manifests, "HorizontalPodAutoscaler", "drybeans")
    assert autoscaler["apiVersion"] == "autoscaling/v2"
    assert autoscaler["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "drybeans"}
    assert autoscaler["spec"]["minReplicas"] == config.service.replicas
    assert autoscaler["spec"]["maxReplicas"] == config.service.max_replicas
    [metric] = autoscaler["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {
        "averageUtilization": config.service.target_cpu_utilization,
        "type": "Utilization",
    }


def test_disruption_budget_covers_the_service_pods(manifests: list[Manifest], deployment: Manifest) -> None:
    budget = find(manifests, "PodDisruptionBudget", "drybeans")
    assert budget["apiVersion"] == "policy/v1"
    assert selects(budget["spec"]["selector"], pod_labels(deployment))
    assert budget["spec"]["maxUnavailable"] == 1


def test_load_balancer_sends_port_80_to_the_service_pods_port_3000(
    manifests: list[Manifest], deployment: Manifest, job: Manifest
) -> None:
    service = find(manifests, "Service", "drybeans")
    assert service["spec"]["type"] == "LoadBalancer"
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(80, 3000)]
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(deployment))
    assert not selects({"matchLabels": service["spec"]["selector"]}, pod_labels(job))
    assert selects(deployment["spec"]["selector"], pod_labels(deployment))


# --- MySQL ------------------------------------------------------------------------------------


def test_mysql_keeps_its_data_on_a_claim_mounted_at_var_lib_mysql(statefulset: Manifest, config: render.Config) -> None:
    container = only_container(statefulset)
    assert container["image"] == config.mysql.image
    assert container["image"].split(":")[0] == "mysql" and container["image"].split(":")[1].startswith("8")
    [claim] = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == config.mysql.storage
    data_mounts = [m for m in container["volumeMounts"] if m["name"] == claim["metadata"]["name"]]
    assert [m["mountPath"] for m in data_mounts] == ["/var/lib/mysql"]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["timeoutSeconds"] > 0


def test_mysql_is_reached_through_a_headless_service_that_selects_its_pod(
    manifests: list[Manifest], statefulset: Manifest, app_config: dict[str, str]
) -> None:
    service = find(manifests, "Service", "drybeans-mysql")
    assert service["spec"]["clusterIP"] == "None"
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"] == app_config["MYSQL_HOST"]
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(statefulset))
    assert [p["port"] for p in service["spec"]["ports"]] == [3306]


def test_network_policy_lets_only_the_service_and_migration_pods_reach_mysql_on_3306(
    manifests: list[Manifest], statefulset: Manifest, deployment: Manifest, job: Manifest
) -> None:
    policy = find(manifests, "NetworkPolicy", "drybeans-mysql")["spec"]
    assert selects(policy["podSelector"], pod_labels(statefulset))
    assert not selects(policy["podSelector"], pod_labels(deployment))
    assert policy["policyTypes"] == ["Ingress"]
    [rule] = policy["ingress"]
    assert rule["ports"] == [{"port": 3306, "protocol": "TCP"}]
    [peer] = rule["from"]
    assert set(peer) == {"podSelector"}, "no namespace or IP-block peers"
    allowed = peer["podSelector"]
    assert selects(allowed, pod_labels(deployment))
    assert selects(allowed, pod_labels(job))
    assert not selects(allowed, pod_labels(statefulset))
    assert not selects(allowed, {"app.kubernetes.io/name": "something-else"})
    assert not selects(allowed, {**pod_labels(deployment), "app.kubernetes.io/name": "intruder"})


def test_mysql_gets_its_passwords_from_the_secret_and_the_init_script_from_a_config_map(
    manifests: list[Manifest], statefulset: Manifest, config: render.Config
) -> None:
    container = only_container(statefulset)
    env = env_by_name(container)
    assert env["MYSQL_DATABASE"]["value"] == config.mysql.database
    assert env["DRYBEANS_APP_DB_USER"]["value"] == config.mysql.app_user
    assert env["DRYBEANS_MIGRATOR_DB_USER"]["value"] == config.mysql.migrator_user
    assert "MYSQL_USER" not in env, "the image would create a third user with ALL on the database"
    secret_keys = {
        name: entry["valueFrom"]["secretKeyRef"]["key"] for name, entry in env.items() if "valueFrom" in entry
    }
    assert secret_keys == {
        "MYSQL_ROOT_PASSWORD": "mysql-root-password",
        "DRYBEANS_APP_DB_PASSWORD": "app-password",
        "DRYBEANS_MIGRATOR_DB_PASSWORD": "migrator-password",
    }
    init_mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/docker-entrypoint-initdb.d")
    init_volume = next(v for v in pod_spec(statefulset)["volumes"] if v["name"] == init_mount["name"])
    init_map = find(manifests, "ConfigMap", init_volume["configMap"]["name"])
    assert list(init_map["data"]) == ["create-users.sh"]
    assert init_map["data"]["create-users.sh"] == render.MYSQL_INIT_SCRIPT.read_text(encoding="utf-8")


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


INIT_ENV = {
    "MYSQL_DATABASE": "drybeans",
    "DRYBEANS_APP_DB_USER": "drybeans_app",
    "DRYBEANS_APP_DB_PASSWORD": "it's a \\ tricky $(pass)",
    "DRYBEANS_MIGRATOR_DB_USER": "drybeans_migrator",
    "DRYBEANS_MIGRATOR_DB_PASSWORD": "migrator-pw",
}


def test_init_script_creates_a_bare_app_user_and_a_migrator_owning_the_database(manifests: list[Manifest]) -> None:
    script = find(manifests, "ConfigMap", "drybeans-mysql-init")["data"]["create-users.sh"]
    result = run_init_script(script, INIT_ENV)
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
    result = run_init_script(render.MYSQL_INIT_SCRIPT.read_text(encoding="utf-8"), {**INIT_ENV, variable: value})
    assert result.returncode != 0
    assert message in result.stderr
    assert "CREATE USER" not in result.stdout


# --- the migration Job ------------------------------------------------------------------------


def test_migration_job_runs_db_migrate_as_the_migrator_from_the_bento_src_dir(
    job: Manifest, deployment: Manifest, config: render.Config
) -> None:
    container = only_container(job)
    assert container["args"] == ["python", "-m", "db.migrate"]
    assert "command" not in container, "the image's entrypoint must run first to activate its virtualenv"
    assert container["workingDir"] == "/home/bentoml/bento/src"
    assert container["image"] == only_container(deployment)["image"]
    assert container["envFrom"] == [{"configMapRef": {"name": "drybeans-config"}}]
    env = env_by_name(container)
    assert env["MYSQL_USER"]["value"] == config.mysql.migrator_user
    assert env["MYSQL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"key": "migrator-password", "name": "drybeans-db"}
    assert env["DRYBEANS_APP_DB_USER"]["value"] == config.mysql.app_user
    assert pod_spec(job)["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] >= 1
    assert job["spec"]["activeDeadlineSeconds"] > 0


# --- secrets, determinism, command line -----------------------------------------------------


def test_no_secret_value_is_rendered(manifests: list[Manifest]) -> None:
    assert not [m for m in manifests if m["kind"] == "Secret"]
    for manifest in manifests:
        if manifest["kind"] in {"Deployment", "StatefulSet", "Job"}:
            for container in pod_spec(manifest)["containers"]:
                for name, entry in env_by_name(container).items():
                    if "PASSWORD" in name:
                        assert "value" not in entry, f"{name} has a literal value"
                        assert entry["valueFrom"]["secretKeyRef"]["name"] == "drybeans-db"


def test_passwords_in_the_environment_never_reach_the_output() -> None:
    result = run_render(extra_env=PASSWORD_SENTINELS)
    assert result.returncode == 0, result.stderr
    for sentinel in PASSWORD_SENTINELS.values():
        assert sentinel not in result.stdout


def test_same_config_gives_byte_identical_output_across_processes(stdout_yaml: str) -> None:
    for seed in ("1", "2"):
        result = run_render(extra_env={"PYTHONHASHSEED": seed})
        assert result.returncode == 0, result.stderr
        assert result.stdout == stdout_yaml


def test_output_is_sorted_by_kind_then_name(manifests: list[Manifest]) -> None:
    order = [(render.KIND_ORDER.index(m["kind"]), m["metadata"]["name"]) for m in manifests]
    assert order == sorted(order)


def test_out_writes_one_file_per_object_with_the_same_content(tmp_path: Path, stdout_yaml: str) -> None:
    out = tmp_path / "manifests"
    result = run_render("--out", str(out))
    assert result.returncode == 0, result.stderr
    documents = stdout_yaml.split("---\n")[1:]
    files = {path.name: path.read_text(encoding="utf-8") for path in out.iterdir()}
    assert len(files) == len(documents)
    assert sorted(files.values()) == sorted(documents)
    assert "namespace-drybeans.yaml" in files
    assert "deployment-drybeans.yaml" in files


def test_out_refuses_a_directory_that_already_holds_files(tmp_path: Path) -> None:
    (tmp_path / "stale.yaml").write_text("kind: Stale\n", encoding="utf-8")
    result = run_render("--out", str(tmp_path))
    assert result.returncode == 2
    assert "must be an empty or new directory" in result.stderr


def test_image_and_namespace_overrides(tmp_path: Path) -> None:
    image = "europe-central2-docker.pkg.dev/drybeans/drybeans-repo/drybeans:v7"
    result = run_render("--image", image, "--namespace", "staging")
    assert result.returncode == 0, result.stderr
    manifests = list(yaml.safe_load_all(result.stdout))
    assert only_container(find(manifests, "Deployment", "drybeans"))["image"] == image
    assert only_container(find(manifests, "Job", "drybeans-migrate"))["image"] == image
    assert {m["metadata"].get("namespace", m["metadata"]["name"]) for m in manifests} == {"staging"}


def test_an_invalid_config_is_refused_with_what_to_fix(tmp_path: Path) -> None:
    raw = yaml.safe_load(render.DEFAULT_CONFIG.read_text(encoding="utf-8"))
    raw["service"]["max_replicas"] = 1
    raw["mysql"]["app_user"] = "bad-user!"
    raw["replicas"] = 3
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = run_render("--config", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"config {path} is invalid" in result.stderr
    assert "service: Value error, max_replicas (1) must be at least replicas (2)" in result.stderr
    assert "mysql.app_user: String should match pattern" in result.stderr
    assert "replicas: Extra inputs are not permitted" in result.stderr


def test_a_missing_config_file_is_reported(tmp_path: Path) -> None:
    result = run_render("--config", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2
    assert "cannot read config" in result.stderr


def test_kubectl_kustomize_builds_the_rendered_files(tmp_path: Path, manifests: list[Manifest]) -> None:
    kubectl = shutil.which("kubectl")
    require(kubectl is not None, "kubectl")
    assert kubectl is not None
    out = tmp_path / "manifests"
    assert run_render("--out", str(out)).returncode == 0
    files = sorted(path.name for path in out.iterdir())
    (out / "kustomization.yaml").write_text(yaml.safe_dump({"resources": files}), encoding="utf-8")
    result = subprocess.run([kubectl, "kustomize", str(out)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    built = list(yaml.safe_load_all(result.stdout))
    key = lambda m: (m["kind"], m["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, built)) == sorted(map(key, manifests))
