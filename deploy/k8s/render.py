"""Render the drybeans Kubernetes manifests from one small config, deterministically.

    python -m deploy.k8s.render [--config deploy/k8s/config.yaml] [--image IMAGE]
                                [--namespace NS] [--out DIR]

Prints one multi-document YAML to stdout, or with --out writes one file per object,
named `<kind>-<name>.yaml`. The same config always gives byte-identical output. No secret
value is ever rendered: the pods read their passwords from the Secret `drybeans-db`, which
is created at deploy time (see deploy/gke/deploy.sh).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Manifest = dict[str, Any]

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = HERE / "config.yaml"
MYSQL_INIT_SCRIPT = HERE / "mysql-init.sh"

PROJECT = "drybeans"
SERVER_NAME = "drybeans"
CONFIG_MAP_NAME = "drybeans-config"
MYSQL_NAME = "drybeans-mysql"
MYSQL_INIT_NAME = "drybeans-mysql-init"
MIGRATION_JOB_NAME = "drybeans-migrate"
# The Secret's name and keys (never its values, which exist only at deploy time).
SECRET_NAME = "drybeans-db"  # noqa: S105
SECRET_KEY_ROOT_PASSWORD = "mysql-root-password"  # noqa: S105
SECRET_KEY_APP_PASSWORD = "app-password"  # noqa: S105
SECRET_KEY_MIGRATOR_PASSWORD = "migrator-password"  # noqa: S105

HTTP_PORT = 3000
MYSQL_PORT = 3306
# BentoML images: the bento is at $BENTO_PATH=/home/bentoml/bento, its code in src/.
BENTO_SRC_DIR = "/home/bentoml/bento/src"
# BentoML writes under $BENTOML_HOME (bentos/, models/, envs/, tmp/,
# prometheus_multiproc_dir/) and in /tmp; the image's home is read-only here, so the pods
# point BENTOML_HOME at a writable emptyDir instead. The bento itself stays where it is.
BENTOML_HOME_DIR = "/var/lib/bentoml"
SPOOL_DIR = "/var/spool/drybeans"
MYSQL_DATA_DIR = "/var/lib/mysql"
MYSQL_INIT_DIR = "/docker-entrypoint-initdb.d"

# Order of the documents in the output: what others depend on comes first.
KIND_ORDER = (
    "Namespace",
    "ConfigMap",
    "Service",
    "NetworkPolicy",
    "StatefulSet",
    "Job",
    "Deployment",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
)

Quantity = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")]
MysqlIdentifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{1,32}$")]
DnsLabel = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]


class _Strict(BaseModel):
    """A config section that rejects unknown keys, so that typos fail loudly."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Amounts(_Strict):
    """CPU and memory, as Kubernetes quantities."""

    cpu: Quantity
    memory: Quantity


class Resources(_Strict):
    """A container's resource requests and limits."""

    requests: Amounts
    limits: Amounts


class ServiceConfig(_Strict):
    """The BentoML prediction service."""

    image: str = Field(min_length=1)
    replicas: int = Field(ge=1)
    max_replicas: int = Field(ge=1)
    target_cpu_utilization: int = Field(ge=1, le=100)
    run_as_user: int = Field(ge=1)
    max_beans_per_request: int = Field(ge=1)
    probe_timeout_seconds: int = Field(ge=1, le=30)
    resources: Resources

    @model_validator(mode="after")
    def _max_replicas_not_below_replicas(self) -> ServiceConfig:
        if self.max_replicas < self.replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) must be at least replicas ({self.replicas})")
        return self


class MysqlConfig(_Strict):
    """The MySQL StatefulSet and its least-privilege users."""

    image: str = Field(min_length=1)
    database: MysqlIdentifier
    app_user: MysqlIdentifier
    migrator_user: MysqlIdentifier
    storage: Quantity
    storage_class: str | None
    resources: Resources

    @model_validator(mode="after")
    def _distinct_users(self) -> MysqlConfig:
        if self.app_user == self.migrator_user:
            raise ValueError("app_user and migrator_user must be different users")
        return self


class Config(_Strict):
    """Everything the manifests are rendered from."""

    namespace: DnsLabel
    service: ServiceConfig
    mysql: MysqlConfig


class ConfigError(Exception):
    """The config file is missing or invalid; the message says what to fix."""


def load_config(path: Path, image: str | None = None, namespace: str | None = None) -> Config:
    """Read and validate the config at `path`, with optional image/namespace overrides."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"config {path} is not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a YAML mapping")
    if image is not None:
        raw = {**raw, "service": {**raw.get("service", {}), "image": image}}
    if namespace is not None:
        raw = {**raw, "namespace": namespace}
    try:
        return Config.model_validate(raw)
    except ValidationError as error:
        problems = "\n".join(
            f"  {'.'.join(str(part) for part in problem['loc']) or '(top level)'}: {problem['msg']}"
            for problem in error.errors()
        )
        raise ConfigError(f"config {path} is invalid:\n{problems}") from error


def labels(component: str) -> dict[str, str]:
    """Labels shared by every object of one component."""
    return {
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "drybeans-render",
        "app.kubernetes.io/name": PROJECT,
        "app.kubernetes.io/part-of": PROJECT,
    }


def selector(component: str) -> dict[str, str]:
    """The labels that select one component's pods."""
    return {"app.kubernetes.io/component": component, "app.kubernetes.io/name": PROJECT}


def metadata(name: str, component: str, config: Config) -> dict[str, Any]:
    """Namespaced object metadata."""
    return {"labels": labels(component), "name": name, "namespace": config.namespace}


def resources(spec: Resources) -> dict[str, dict[str, str]]:
    """A container's `resources` field."""
    return spec.model_dump()


def secret_env(name: str, key: str) -> dict[str, Any]:
    """An env var read from the deploy-time Secret."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"key": key, "name": SECRET_NAME}}}


def plain_env(name: str, value: str) -> dict[str, str]:
    """An env var with a literal, non-secret value."""
    return {"name": name, "value": value}


def app_config_data(config: Config) -> dict[str, str]:
    """Non-secret settings shared by the service and the migration Job."""
    return {
        "BENTOML_HOME": BENTOML_HOME_DIR,
        "DRYBEANS_MAX_BEANS_PER_REQUEST": str(config.service.max_beans_per_request),
        "DRYBEANS_MIGRATE_ON_STARTUP": "false",
        "DRYBEANS_SPOOL_DIR": SPOOL_DIR,
        "MYSQL_DB": config.mysql.database,
        "MYSQL_HOST": MYSQL_NAME,
        "MYSQL_PORT": str(MYSQL_PORT),
    }


def namespace(config: Config) -> Manifest:
    """The Namespace everything lives in."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"labels": labels("namespace"), "name": config.namespace},
    }


def app_config_map(config: Config) -> Manifest:
    """The ConfigMap with the service's non-secret settings."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(CONFIG_MAP_NAME, "config", config),
        "data": app_config_data(config),
    }


def mysql_init_config_map(config: Config) -> Manifest:
    """The ConfigMap holding the first-boot script that creates the two database users."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(MYSQL_INIT_NAME, "database", config),
        "data": {"create-users.sh": MYSQL_INIT_SCRIPT.read_text(encoding="utf-8")},
    }


def mysql_headless_service(config: Config) -> Manifest:
    """The headless Service giving the MySQL pod its stable DNS name."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(MYSQL_NAME, "database", config),
        "spec": {
            "clusterIP": "None",
            "ports": [{"name": "mysql", "port": MYSQL_PORT, "targetPort": "mysql"}],
            "selector": selector("database"),
        },
    }


def mysql_network_policy(config: Config) -> Manifest:
    """Only the service's and the migration Job's pods may reach MySQL, and only on 3306."""
    allowed_clients = {
        "matchExpressions": [
            {"key": "app.kubernetes.io/component", "operator": "In", "values": ["migration", "server"]}
        ],
        "matchLabels": {"app.kubernetes.io/name": PROJECT},
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(MYSQL_NAME, "database", config),
        "spec": {
            "ingress": [
                {
                    "from": [{"podSelector": allowed_clients}],
                    "ports": [{"port": MYSQL_PORT, "protocol": "TCP"}],
                }
            ],
            "podSelector": {"matchLabels": selector("database")},
            "policyTypes": ["Ingress"],
        },
    }


def mysql_probe(period_seconds: int, failure_threshold: int) -> dict[str, Any]:
    """A probe that passes once mysqld answers on TCP (it exits 0 even on 'access denied')."""
    return {
        "exec": {"command": ["mysqladmin", "ping", "--host=127.0.0.1", "--silent"]},
        "failureThreshold": failure_threshold,
        "periodSeconds": period_seconds,
        "timeoutSeconds": 5,
    }


def mysql_statefulset(config: Config) -> Manifest:
    """MySQL with a persistent volume at /var/lib/mysql and the first-boot user script."""
    mysql = config.mysql
    container = {
        "env": [
            plain_env("DRYBEANS_APP_DB_USER", mysql.app_user),
            secret_env("DRYBEANS_APP_DB_PASSWORD", SECRET_KEY_APP_PASSWORD),
            plain_env("DRYBEANS_MIGRATOR_DB_USER", mysql.migrator_user),
            secret_env("DRYBEANS_MIGRATOR_DB_PASSWORD", SECRET_KEY_MIGRATOR_PASSWORD),
            plain_env("MYSQL_DATABASE", mysql.database),
            secret_env("MYSQL_ROOT_PASSWORD", SECRET_KEY_ROOT_PASSWORD),
        ],
        "image": mysql.image,
        "imagePullPolicy": "IfNotPresent",
        "livenessProbe": mysql_probe(period_seconds=10, failure_threshold=3),
        "name": "mysql",
        "ports": [{"containerPort": MYSQL_PORT, "name": "mysql", "protocol": "TCP"}],
        "readinessProbe": mysql_probe(period_seconds=5, failure_threshold=3),
        "resources": resources(mysql.resources),
        # The image's entrypoint starts as root to chown the data directory, then drops to
        # the mysql user itself; it needs no privilege escalation beyond that.
        "securityContext": {"allowPrivilegeEscalation": False},
        # The first boot initialises the data directory before mysqld listens on TCP.
        "startupProbe": mysql_probe(period_seconds=10, failure_threshold=60),
        "volumeMounts": [
            # A sub-directory: a fresh disk's root holds lost+found, which mysqld refuses.
            {"mountPath": MYSQL_DATA_DIR, "name": "data", "subPath": "mysql"},
            {"mountPath": MYSQL_INIT_DIR, "name": "init", "readOnly": True},
        ],
    }
    claim_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": mysql.storage}},
    }
    if mysql.storage_class is not None:
        claim_spec["storageClassName"] = mysql.storage_class
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(MYSQL_NAME, "database", config),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector("database")},
            "serviceName": MYSQL_NAME,
            "template": {
                "metadata": {"labels": labels("database")},
                "spec": {
                    "automountServiceAccountToken": False,
                    "containers": [container],
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "terminationGracePeriodSeconds": 60,
                    "volumes": [{"configMap": {"name": MYSQL_INIT_NAME}, "name": "init"}],
                },
            },
            "volumeClaimTemplates": [{"metadata": {"labels": labels("database"), "name": "data"}, "spec": claim_spec}],
        },
    }


def bento_pod_security_context(config: Config) -> dict[str, Any]:
    """Pod security for the BentoML image: its non-root numeric uid, default seccomp."""
    uid = config.service.run_as_user
    return {
        "fsGroup": uid,
        "runAsGroup": uid,
        "runAsNonRoot": True,
        "runAsUser": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def bento_container_security_context() -> dict[str, Any]:
    """Container security for the BentoML image: read-only root, no capabilities."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }


def bento_writable_mounts() -> list[dict[str, str]]:
    """The writable directories BentoML and the service need under a read-only root."""
    return [
        {"mountPath": BENTOML_HOME_DIR, "name": "bentoml-home"},
        {"mountPath": SPOOL_DIR, "name": "spool"},
        {"mountPath": "/tmp", "name": "tmp"},  # noqa: S108 (a mount in the pod, not a file here)
    ]


def bento_writable_volumes() -> list[dict[str, Any]]:
    """The emptyDir volumes behind `bento_writable_mounts`."""
    return [
        {"emptyDir": {"sizeLimit": "1Gi"}, "name": "bentoml-home"},
        {"emptyDir": {"sizeLimit": "1Gi"}, "name": "spool"},
        {"emptyDir": {"sizeLimit": "1Gi"}, "name": "tmp"},
    ]


def bento_pod_spec(config: Config, container: dict[str, Any]) -> dict[str, Any]:
    """A pod running one container of the BentoML image, hardened."""
    return {
        "automountServiceAccountToken": False,
        "containers": [container],
        # Service links would add DRYBEANS_PORT=tcp://... and the like to the environment.
        "enableServiceLinks": False,
        "securityContext": bento_pod_security_context(config),
        "volumes": bento_writable_volumes(),
    }


def http_probe(path: str, config: Config, period_seconds: int, failure_threshold: int) -> dict[str, Any]:
    """An HTTP GET probe on the service's port."""
    return {
        "failureThreshold": failure_threshold,
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period_seconds,
        "timeoutSeconds": config.service.probe_timeout_seconds,
    }


def config_checksum(config: Config) -> str:
    """A digest of the ConfigMap's data, so that changing it rolls the Deployment."""
    encoded = yaml.safe_dump(app_config_data(config), sort_keys=True).encode("utf-8")
    return hashlib.sha256(encoded).hexdigest()


def server_deployment(config: Config) -> Manifest:
    """The BentoML service: probes, resources, non-root, read-only root filesystem."""
    container = {
        "env": [
            plain_env("MYSQL_USER", config.mysql.app_user),
            secret_env("MYSQL_PASSWORD", SECRET_KEY_APP_PASSWORD),
        ],
        "envFrom": [{"configMapRef": {"name": CONFIG_MAP_NAME}}],
        "image": config.service.image,
        "imagePullPolicy": "IfNotPresent",
        "livenessProbe": http_probe("/livez", config, period_seconds=10, failure_threshold=3),
        "name": "server",
        "ports": [{"containerPort": HTTP_PORT, "name": "http", "protocol": "TCP"}],
        "readinessProbe": http_probe("/readyz", config, period_seconds=5, failure_threshold=3),
        "resources": resources(config.service.resources),
        "securityContext": bento_container_security_context(),
        # Loading the model may take a while; liveness starts counting only after this passes.
        "startupProbe": http_probe("/livez", config, period_seconds=5, failure_threshold=24),
        "volumeMounts": bento_writable_mounts(),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(SERVER_NAME, "server", config),
        "spec": {
            # No `replicas`: the HorizontalPodAutoscaler owns the count (min = config replicas).
            "selector": {"matchLabels": selector("server")},
            "strategy": {
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
                "type": "RollingUpdate",
            },
            "template": {
                "metadata": {
                    "annotations": {"drybeans/config-checksum": config_checksum(config)},
                    "labels": labels("server"),
                },
                "spec": bento_pod_spec(config, container),
            },
        },
    }


def migration_job(config: Config) -> Manifest:
    """The one-shot schema migration, as the migrator user, granting the app user afterwards."""
    container = {
        # Arguments, not a command: the image's entrypoint activates its virtualenv first.
        "args": ["python", "-m", "db.migrate"],
        "env": [
            plain_env("DRYBEANS_APP_DB_USER", config.mysql.app_user),
            plain_env("MYSQL_USER", config.mysql.migrator_user),
            secret_env("MYSQL_PASSWORD", SECRET_KEY_MIGRATOR_PASSWORD),
        ],
        "envFrom": [{"configMapRef": {"name": CONFIG_MAP_NAME}}],
        "image": config.service.image,
        "imagePullPolicy": "IfNotPresent",
        "name": "migrate",
        "resources": {
            "limits": {"cpu": "500m", "memory": "512Mi"},
            "requests": {"cpu": "250m", "memory": "512Mi"},
        },
        "securityContext": bento_container_security_context(),
        "volumeMounts": bento_writable_mounts(),
        "workingDir": BENTO_SRC_DIR,
    }
    pod_spec = {**bento_pod_spec(config, container), "restartPolicy": "Never"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(MIGRATION_JOB_NAME, "migration", config),
        "spec": {
            "activeDeadlineSeconds": 600,
            "backoffLimit": 4,
            "template": {"metadata": {"labels": labels("migration")}, "spec": pod_spec},
            "ttlSecondsAfterFinished": 86400,
        },
    }


def server_service(config: Config) -> Manifest:
    """The public LoadBalancer: port 80 to the service's port 3000."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(SERVER_NAME, "server", config),
        "spec": {
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": HTTP_PORT}],
            "selector": selector("server"),
            "type": "LoadBalancer",
        },
    }


def server_autoscaler(config: Config) -> Manifest:
    """Scale the service on CPU between `replicas` and `max_replicas` (autoscaling/v2)."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(SERVER_NAME, "server", config),
        "spec": {
            "maxReplicas": config.service.max_replicas,
            "metrics": [
                {
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "averageUtilization": config.service.target_cpu_utilization,
                            "type": "Utilization",
                        },
                    },
                    "type": "Resource",
                }
            ],
            "minReplicas": config.service.replicas,
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": SERVER_NAME},
        },
    }


def server_disruption_budget(config: Config) -> Manifest:
    """Voluntary disruptions (node drains, upgrades) take at most one service pod at a time."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(SERVER_NAME, "server", config),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector("server")}},
    }


def render_manifests(config: Config) -> list[Manifest]:
    """Every object of the deployment, in a stable order (by kind, then name)."""
    manifests = [
        namespace(config),
        app_config_map(config),
        mysql_init_config_map(config),
        mysql_headless_service(config),
        mysql_network_policy(config),
        mysql_statefulset(config),
        migration_job(config),
        server_deployment(config),
        server_service(config),
        server_autoscaler(config),
        server_disruption_budget(config),
    ]
    return sorted(manifests, key=lambda m: (KIND_ORDER.index(m["kind"]), m["metadata"]["name"]))


class _ManifestDumper(yaml.SafeDumper):
    """YAML dumper writing multi-line strings (the init script) as readable literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_ManifestDumper.add_representer(str, _represent_str)


def to_yaml(manifest: Manifest) -> str:
    """One object as YAML with sorted keys (stable, byte for byte)."""
    return yaml.dump(manifest, Dumper=_ManifestDumper, sort_keys=True, default_flow_style=False, allow_unicode=True)


def to_multi_document_yaml(manifests: list[Manifest]) -> str:
    """All objects as one multi-document YAML stream."""
    return "".join(f"---\n{to_yaml(manifest)}" for manifest in manifests)


def file_name(manifest: Manifest) -> str:
    """The file an object is written to with --out: `<kind>-<name>.yaml`."""
    return f"{manifest['kind'].lower()}-{manifest['metadata']['name']}.yaml"


def write_manifests(manifests: list[Manifest], out_dir: Path) -> list[Path]:
    """Write one file per object into `out_dir`, which must be empty or not exist yet."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigError(f"--out {out_dir} must be an empty or new directory, so that no stale manifest is applied")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for manifest in manifests:
        path = out_dir / file_name(manifest)
        path.write_text(to_yaml(manifest), encoding="utf-8")
        paths.append(path)
    return paths


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m deploy.k8s.render",
        description="Render the drybeans Kubernetes manifests (no secret values) from one config.",
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="config YAML (default: %(default)s)")
    parser.add_argument("--image", help="image of the service, overriding service.image")
    parser.add_argument("--namespace", help="namespace, overriding namespace")
    parser.add_argument("--out", type=Path, help="write one file per object into this empty directory")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Render to stdout or to --out; exit 2 with a message when the config is wrong."""
    args = parse_args(argv)
    try:
        config = load_config(args.config, image=args.image, namespace=args.namespace)
        manifests = render_manifests(config)
        if args.out is None:
            sys.stdout.write(to_multi_document_yaml(manifests))
        else:
            for path in write_manifests(manifests, args.out):
                print(path)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
