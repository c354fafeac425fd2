"""deploy/gke/deploy.sh: the commands its --dry-run prints for each database, the manifests it renders, and its
refusal of incomplete input.

The dry runs get a PATH holding only the few basic tools the script itself uses, without gcloud,
kubectl, docker or python: any attempt to really run one of them would fail the run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import require

pytestmark = pytest.mark.deploy

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "deploy" / "gke" / "deploy.sh"
BASIC_TOOLS = ("bash", "cat", "cut", "dirname", "mktemp", "rm")
SECRETS = {
    "DRYBEANS_MYSQL_ROOT_PASSWORD": "root-pw-sentinel-5e1",
    "DRYBEANS_APP_DB_PASSWORD": "app-pw-sentinel-9c4",
    "DRYBEANS_MIGRATOR_DB_PASSWORD": "migrator-pw-sentinel-2ab",
    "DRYBEANS_API_TOKEN": "api-token-sentinel-77f",
}
REMOTE_IMAGE = "europe-central2-docker.pkg.dev/drybeans/drybeans-repo/drybeans:1.2.3"
CLOUDSQL_ARGS = ("--database", "cloudsql", "--domain", "beans.example.org")

Manifest = dict[str, Any]


def tools_directory(directory: Path, tools: tuple[str, ...]) -> str:
    """A directory with links to these tools only, for PATH."""
    directory.mkdir()
    for tool in tools:
        found = shutil.which(tool)
        assert found is not None, f"{tool} is needed to run deploy.sh"
        (directory / tool).symlink_to(found)
    return str(directory)


@pytest.fixture(scope="module")
def basic_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The basic tools only: no cloud or cluster tool can run."""
    return tools_directory(tmp_path_factory.mktemp("basic") / "bin", BASIC_TOOLS)


@pytest.fixture(scope="module")
def kubectl_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The basic tools and kubectl: all that --print-manifests may need."""
    require(shutil.which("kubectl") is not None, "kubectl (with its built-in kustomize)")
    return tools_directory(tmp_path_factory.mktemp("kubectl") / "bin", (*BASIC_TOOLS, "kubectl"))


def deploy(
    path: str, *args: str, env: dict[str, str] | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """Run deploy.sh with `path` as PATH and an empty gcloud/kube configuration."""
    home = Path(path).parent / "home"
    home.mkdir(exist_ok=True)
    base = {"PATH": path, "HOME": str(home), "CLOUDSDK_CONFIG": str(home / "gcloud"), "KUBECONFIG": ""}
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=cwd,
        env={**base, **(env if env is not None else SECRETS)},
        capture_output=True,
        text=True,
        check=False,
    )


def commands_of(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and all(line.startswith("+ ") for line in lines), result.stdout
    return [line[2:] for line in lines]


@pytest.fixture(scope="module")
def mysql_run(basic_path: str) -> subprocess.CompletedProcess[str]:
    return deploy(basic_path, "--project", "drybeans", "--tag", "1.2.3", "--dry-run")


@pytest.fixture(scope="module")
def cloudsql_run(basic_path: str) -> subprocess.CompletedProcess[str]:
    return deploy(basic_path, "--project", "drybeans", "--tag", "1.2.3", *CLOUDSQL_ARGS, "--dry-run")


@pytest.fixture(scope="module")
def mysql_commands(mysql_run: subprocess.CompletedProcess[str]) -> list[str]:
    return commands_of(mysql_run)


@pytest.fixture(scope="module")
def cloudsql_commands(cloudsql_run: subprocess.CompletedProcess[str]) -> list[str]:
    return commands_of(cloudsql_run)


def print_manifests(path: str, *args: str, cwd: Path = REPO) -> list[Manifest]:
    """The manifests deploy.sh would apply, rendered with the real kubectl."""
    result = deploy(path, "--project", "drybeans", "--tag", "1.2.3", *args, "--print-manifests", cwd=cwd)
    assert result.returncode == 0, result.stderr
    for value in SECRETS.values():
        assert value not in result.stdout
    return list(yaml.safe_load_all(result.stdout))


@pytest.fixture(scope="module")
def mysql_manifests(kubectl_path: str) -> list[Manifest]:
    return print_manifests(kubectl_path)


@pytest.fixture(scope="module")
def cloudsql_manifests(kubectl_path: str) -> list[Manifest]:
    return print_manifests(kubectl_path, *CLOUDSQL_ARGS)


def index_of(commands: list[str], *fragments: str) -> int:
    """Index of the first command containing every fragment."""
    for index, command in enumerate(commands):
        if all(fragment in command for fragment in fragments):
            return index
    raise AssertionError(f"no command contains {fragments}:\n" + "\n".join(commands))


def manifests_file(commands: list[str]) -> str:
    match = re.search(r"^kubectl kustomize (\S+) --output=(\S+)$", commands[index_of(commands, "kubectl kustomize")])
    assert match is not None
    assert match.group(2) == f"{match.group(1)}/manifests.yaml"
    return match.group(2)


def assert_in_order(commands: list[str], steps: list[tuple[str, ...]]) -> None:
    positions = [index_of(commands, *step) for step in steps]
    assert positions == sorted(positions), list(zip(positions, steps, strict=True))


CLUSTER_STEPS = [
    ("gcloud artifacts repositories describe drybeans-repo", "--location=europe-central2"),
    ("gcloud auth configure-docker europe-central2-docker.pkg.dev",),
    ("docker tag drybeans:1.2.3 " + REMOTE_IMAGE,),
    ("docker push " + REMOTE_IMAGE,),
    ("gcloud container clusters describe drybeans-cluster", "--region=europe-central2"),
    ("gcloud container clusters get-credentials drybeans-cluster", "--region=europe-central2"),
]


def test_mysql_dry_run_prints_the_tutorial_steps_in_order(mysql_commands: list[str]) -> None:
    steps = [
        ("gcloud services enable container.googleapis.com artifactregistry.googleapis.com --project=drybeans",),
        *CLUSTER_STEPS,
        ("kubectl kustomize",),
        ("kubectl apply -f", "--selector=app.kubernetes.io/component=namespace"),
        ("kubectl create secret generic drybeans-db", "| kubectl apply -f -"),
        ("kubectl create secret generic drybeans-api", "| kubectl apply -f -"),
        ("kubectl get secret drybeans-tokens --namespace=drybeans",
         "|| kubectl create secret generic drybeans-tokens --namespace=drybeans --from-literal=tokens="),
        ("kubectl apply -f", "notin (server,migration,ingress)"),
        ("kubectl rollout status statefulset/drybeans-mysql",),
        ("kubectl delete job drybeans-migrate", "--ignore-not-found"),
        ("kubectl apply -f", "component=migration"),
        ("kubectl wait job/drybeans-migrate", "--for=condition=complete"),
        ("kubectl rollout status statefulset/drybeans ",),
        ("kubectl get service drybeans --namespace=drybeans",),
    ]
    assert_in_order(mysql_commands, steps)
    assert not [c for c in mysql_commands if "loadBalancer" in c], "no public plain-HTTP address (issue #19)"
    # The one command not listed above: applying everything, just before the service's rollout.
    final_apply = mysql_commands[index_of(mysql_commands, "kubectl rollout status statefulset/drybeans ") - 1]
    assert final_apply == f"kubectl apply -f {manifests_file(mysql_commands)}"
    assert len(mysql_commands) == len(steps) + 1
    assert not [c for c in mysql_commands if "gcloud sql" in c or "sqladmin" in c]


def test_cloudsql_dry_run_creates_the_instance_users_and_identity_before_the_manifests(
    cloudsql_commands: list[str],
) -> None:
    steps = [
        ("gcloud services enable", "sqladmin.googleapis.com", "servicenetworking.googleapis.com"),
        *CLUSTER_STEPS,
        ("gcloud compute addresses describe google-managed-services-drybeans --global",
         "|| gcloud compute addresses create google-managed-services-drybeans", "--purpose=VPC_PEERING"),
        ("gcloud services vpc-peerings list", "|| gcloud services vpc-peerings connect",
         "--ranges=google-managed-services-drybeans"),
        ("gcloud sql instances describe drybeans-sql", "|| gcloud sql instances create drybeans-sql",
         "--database-version=MYSQL_8_4", "--no-assign-ip", "--network=projects/drybeans/global/networks/default",
         "--region=europe-central2"),
        ("gcloud sql databases describe drybeans --instance=drybeans-sql", "|| gcloud sql databases create drybeans"),
        ("gcloud sql users describe drybeans_migrator", "|| gcloud sql users create drybeans_migrator"),
        ("gcloud sql users describe drybeans_app", "|| gcloud sql users create drybeans_app"),
        ("gcloud iam service-accounts describe drybeans-sql@drybeans.iam.gserviceaccount.com",
         "|| gcloud iam service-accounts create drybeans-sql"),
        ("gcloud projects add-iam-policy-binding drybeans",
         "--member=serviceAccount:drybeans-sql@drybeans.iam.gserviceaccount.com", "--role=roles/cloudsql.client"),
        ("gcloud iam service-accounts add-iam-policy-binding drybeans-sql@drybeans.iam.gserviceaccount.com",
         "--role=roles/iam.workloadIdentityUser", "--member=serviceAccount:drybeans.svc.id.goog[drybeans/drybeans]"),
        ("gcloud compute addresses describe drybeans-ip --global", "|| gcloud compute addresses create drybeans-ip"),
        ("kubectl kustomize",),
        ("kubectl apply -f", "--selector=app.kubernetes.io/component=namespace"),
        ("kubectl create secret generic drybeans-db",),
        ("kubectl create secret generic drybeans-api",),
        ("kubectl get secret drybeans-tokens", "|| kubectl create secret generic drybeans-tokens"),
        ("kubectl apply -f", "notin (server,migration,ingress)"),
        ("kubectl delete job drybeans-migrate",),
        ("kubectl apply -f", "component=migration"),
        ("kubectl wait job/drybeans-migrate", "--for=condition=complete"),
        ("kubectl rollout status statefulset/drybeans ",),
        ("gcloud compute addresses describe drybeans-ip --global", "--format=value(address)"),
    ]
    assert_in_order(cloudsql_commands, steps)
    assert len(cloudsql_commands) == len(steps) + 1
    assert not [c for c in cloudsql_commands if "drybeans-mysql" in c]


def test_existing_cloud_resources_are_kept_and_missing_ones_created(
    mysql_commands: list[str], cloudsql_commands: list[str]
) -> None:
    repository = mysql_commands[index_of(mysql_commands, "gcloud artifacts repositories describe")]
    assert " || gcloud artifacts repositories create drybeans-repo " in repository
    cluster = mysql_commands[index_of(mysql_commands, "gcloud container clusters describe")]
    assert cluster.endswith(
        "|| gcloud container clusters create-auto drybeans-cluster --project=drybeans --region=europe-central2"
        " --network=default"
    )
    creations = [c for c in cloudsql_commands if re.search(r"\b(create|connect)\b", c) and "secret" not in c]
    assert creations and all(" || " in c for c in creations), creations


def test_every_kubectl_step_targets_the_rendered_manifests_and_the_namespace(
    mysql_commands: list[str], cloudsql_commands: list[str]
) -> None:
    for commands in (mysql_commands, cloudsql_commands):
        manifests = manifests_file(commands)
        applies = [c for c in commands if c.startswith("kubectl apply -f ") and "| kubectl" not in c]
        assert len(applies) == 4
        assert all(c.startswith(f"kubectl apply -f {manifests}") for c in applies)
        namespaced = [c for c in commands if c.startswith("kubectl") and "apply -f" not in c and "kustomize" not in c]
        assert namespaced and all("--namespace=drybeans" in c for c in namespaced)


def created_secret_keys(commands: list[str]) -> dict[str, set[str]]:
    """Secret name -> keys, read from the env files the dry run would pipe into kubectl."""
    keys = {}
    for command in commands:
        match = re.match(r"kubectl create secret generic (\S+) .*--from-env-file=<\(printf '([^']*)'", command)
        if match:
            lines = match.group(2).split("\\n")  # printf's newline escapes, as printed
            keys[match.group(1)] = {line.removesuffix("=%s") for line in lines if line}
    return keys


def test_the_secrets_are_built_from_the_environment_without_printing_a_value(
    mysql_run: subprocess.CompletedProcess[str], cloudsql_run: subprocess.CompletedProcess[str],
) -> None:
    expected = {
        mysql_run: {"DRYBEANS_MYSQL_ROOT_PASSWORD", "DRYBEANS_APP_DB_PASSWORD", "DRYBEANS_MIGRATOR_DB_PASSWORD",
                    "DRYBEANS_API_TOKEN"},
        cloudsql_run: {"DRYBEANS_APP_DB_PASSWORD", "DRYBEANS_MIGRATOR_DB_PASSWORD", "DRYBEANS_API_TOKEN"},
    }
    for run, variables in expected.items():
        secrets = "\n".join(c for c in commands_of(run) if "secret generic" in c)
        assert set(re.findall(r'"\$(DRYBEANS_[A-Z_]+)"', secrets)) == variables
        for value in SECRETS.values():
            assert value not in run.stdout
            assert value not in run.stderr
    users = [c for c in commands_of(cloudsql_run) if "gcloud sql users create" in c]
    assert len(users) == 2
    assert all(re.search(r"--flags-file=<\(password_flags_file DRYBEANS_\w+_DB_PASSWORD\)$", c) for c in users)
    assert not [c for c in commands_of(cloudsql_run) if "--password" in c]


def test_the_password_flags_file_escapes_for_yaml(tmp_path: Path) -> None:
    # The function deploy.sh feeds to gcloud's --flags-file, run alone.
    script = SCRIPT.read_text(encoding="utf-8")
    function = re.search(r"^password_flags_file\(\) \{.*?^\}$", script, re.MULTILINE | re.DOTALL)
    assert function is not None
    tricky = 'a "quoted" \\ back: slash # not a comment'
    result = subprocess.run(["bash", "-c", f"{function.group(0)}\npassword_flags_file SECRET"],
                            env={"SECRET": tricky}, capture_output=True, text=True, check=True)
    assert yaml.safe_load(result.stdout) == {"--password": tricky}


@pytest.mark.parametrize("database", ["mysql", "cloudsql"])
def test_the_secret_keys_created_are_those_the_manifests_read(
    database: str, mysql_commands: list[str], cloudsql_commands: list[str],
    mysql_manifests: list[Manifest], cloudsql_manifests: list[Manifest],
) -> None:
    commands, manifests = {"mysql": (mysql_commands, mysql_manifests),
                           "cloudsql": (cloudsql_commands, cloudsql_manifests)}[database]
    referenced: dict[str, set[str]] = {}
    for workload in (m for m in manifests if m["kind"] in {"StatefulSet", "Job"}):
        spec = workload["spec"]["template"]["spec"]
        for container in spec.get("initContainers", []) + spec["containers"]:
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    referenced.setdefault(ref["name"], set()).add(ref["key"])
    assert created_secret_keys(commands) == referenced


@pytest.mark.parametrize("database", ["mysql", "cloudsql"])
def test_names_in_the_commands_are_those_the_manifests_define(
    database: str, mysql_commands: list[str], cloudsql_commands: list[str],
    mysql_manifests: list[Manifest], cloudsql_manifests: list[Manifest],
) -> None:
    commands, manifests = {"mysql": (mysql_commands, mysql_manifests),
                           "cloudsql": (cloudsql_commands, cloudsql_manifests)}[database]
    defined = {(m["kind"].lower(), m["metadata"]["name"]) for m in manifests}
    text = "\n".join(commands)
    for kind, name in re.findall(r"\b(statefulset|job)/([a-z0-9-]+)", text):
        assert (kind, name) in defined
    for name in re.findall(r"kubectl get service (\S+)", text):
        assert ("service", name) in defined
    if database == "cloudsql":
        member = re.search(r"svc\.id\.goog\[(\S+)/(\S+)\]", text)
        assert member is not None
        account = next(m for m in manifests if m["kind"] == "ServiceAccount")
        assert (member.group(1), member.group(2)) == (account["metadata"]["namespace"], account["metadata"]["name"])
        ingress = next(m for m in manifests if m["kind"] == "Ingress")
        address = re.search(r"gcloud compute addresses create (drybeans-ip) --global", text)
        assert address is not None
        assert ingress["metadata"]["annotations"]["kubernetes.io/ingress.global-static-ip-name"] == address.group(1)


@pytest.mark.parametrize("database", ["mysql", "cloudsql"])
def test_the_printed_port_forwards_reach_the_api_and_grpc(
    database: str, mysql_run: subprocess.CompletedProcess[str], cloudsql_run: subprocess.CompletedProcess[str],
    mysql_manifests: list[Manifest], cloudsql_manifests: list[Manifest],
) -> None:
    """Issue #20: with or without --domain, the script says how to reach V2 over gRPC (inside the cluster only),
    and each port-forward it prints names a Service port of the rendered manifests leading to the right pod port."""
    run, manifests = {"mysql": (mysql_run, mysql_manifests), "cloudsql": (cloudsql_run, cloudsql_manifests)}[database]
    assert run.returncode == 0, run.stderr
    forwards = re.findall(r"kubectl port-forward service/(\S+) (\d+):(\d+) --namespace=(\S+)", run.stderr)
    [server] = [m for m in manifests if m["kind"] == "StatefulSet" and m["metadata"]["name"] == "drybeans"]
    pod_ports = {p["name"]: p["containerPort"] for c in server["spec"]["template"]["spec"]["containers"]
                 for p in c.get("ports", [])}
    reached: set[tuple[int, int]] = set()
    for name, local, remote, namespace in forwards:
        [service] = [m for m in manifests if m["kind"] == "Service" and m["metadata"]["name"] == name]
        assert service["metadata"]["namespace"] == namespace
        [port] = [p for p in service["spec"]["ports"] if p["port"] == int(remote)]
        reached.add((int(local), pod_ports[port["targetPort"]]))
    assert (3002, 3002) in reached, run.stderr
    # The API's port-forward stays the quick start's way in; with --domain, the HTTPS address is.
    assert ((3000, 3000) in reached) == (database == "mysql")


@pytest.mark.parametrize("database", ["mysql", "cloudsql"])
def test_the_phase_selectors_split_the_manifests_as_the_script_expects(
    database: str, mysql_manifests: list[Manifest], cloudsql_manifests: list[Manifest]
) -> None:
    manifests = {"mysql": mysql_manifests, "cloudsql": cloudsql_manifests}[database]
    component = {(m["kind"], m["metadata"]["name"]): m["metadata"]["labels"]["app.kubernetes.io/component"]
                 for m in manifests}
    first_phase = {(kind, re.sub(r"-[a-z0-9]{10}$", "", name)) for (kind, name), value in component.items()
                   if value not in {"server", "migration", "ingress"}}
    assert first_phase == {
        "mysql": {("Namespace", "drybeans"), ("ConfigMap", "drybeans-config"), ("ConfigMap", "drybeans-mysql-init"),
                  ("Service", "drybeans-mysql"), ("NetworkPolicy", "drybeans-mysql"),
                  ("StatefulSet", "drybeans-mysql")},
        "cloudsql": {("Namespace", "drybeans"), ("ConfigMap", "drybeans-config"), ("ConfigMap", "drybeans-cloudsql"),
                     ("ServiceAccount", "drybeans")},
    }[database]
    assert {key for key, value in component.items() if value == "migration"} >= {("Job", "drybeans-migrate")}
    assert [key for key, value in component.items() if value == "namespace"] == [("Namespace", "drybeans")]


def test_print_manifests_fills_in_only_what_varies(kubectl_path: str, tmp_path: Path) -> None:
    manifests = print_manifests(kubectl_path, *CLOUDSQL_ARGS, "--namespace", "beans-prod", "--region", "us-central1",
                                "--sql-instance", "beans-db", cwd=tmp_path)
    text = yaml.safe_dump_all(manifests)
    for placeholder in ("PROJECT:REGION:INSTANCE", "@PROJECT.", "example.com", "namespace: drybeans\n"):
        assert placeholder not in text
    [namespace] = [m for m in manifests if m["kind"] == "Namespace"]
    assert namespace["metadata"]["name"] == "beans-prod"
    assert {m["metadata"].get("namespace", "beans-prod") for m in manifests} == {"beans-prod"}
    images = set(re.findall(r"image: (\S+)", text))
    assert images == {"us-central1-docker.pkg.dev/drybeans/drybeans-repo/drybeans:1.2.3",
                      next(i for i in images if "cloud-sql-proxy" in i)}
    [cloudsql] = [m for m in manifests if m["metadata"]["name"].startswith("drybeans-cloudsql")]
    assert cloudsql["data"] == {"instance-connection-name": "drybeans:us-central1:beans-db"}
    [account] = [m for m in manifests if m["kind"] == "ServiceAccount"]
    assert account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"] == (
        "drybeans-sql@drybeans.iam.gserviceaccount.com"
    )
    [certificate] = [m for m in manifests if m["kind"] == "ManagedCertificate"]
    assert certificate["spec"]["domains"] == ["beans.example.org"]


def test_flags_override_environment_defaults(basic_path: str) -> None:
    env = {**SECRETS, "GCP_PROJECT": "from-env-project", "GCP_REGION": "us-central1", "DRYBEANS_TAG": "env-tag",
           "DRYBEANS_DATABASE": "cloudsql"}
    result = deploy(basic_path, "--dry-run", "--region", "europe-west4", "--cluster", "other-cluster",
                    "--database", "mysql", env=env)
    assert result.returncode == 0, result.stderr
    assert "docker push europe-west4-docker.pkg.dev/from-env-project/drybeans-repo/drybeans:env-tag" in result.stdout
    assert "create-auto other-cluster --project=from-env-project --region=europe-west4" in result.stdout
    assert "us-central1" not in result.stdout
    assert "gcloud sql" not in result.stdout


def test_dry_run_works_from_another_directory(basic_path: str, tmp_path: Path) -> None:
    result = deploy(basic_path, "--project", "drybeans", "--tag", "1.2.3", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--tag", "1.2.3", "--dry-run"], SECRETS, "--project is required (or set GCP_PROJECT)"),
        (["--project", "drybeans", "--dry-run"], SECRETS, "--tag is required (or set DRYBEANS_TAG)"),
        (
            ["--project", "drybeans", "--tag", "1.2.3", "--dry-run"],
            {"DRYBEANS_APP_DB_PASSWORD": "x", "DRYBEANS_API_TOKEN": "t"},
            "set the secrets in the environment: DRYBEANS_MYSQL_ROOT_PASSWORD DRYBEANS_MIGRATOR_DB_PASSWORD",
        ),
        (
            ["--project", "drybeans", "--tag", "1.2.3", "--database", "cloudsql", "--dry-run"],
            {"DRYBEANS_APP_DB_PASSWORD": "x", "DRYBEANS_MIGRATOR_DB_PASSWORD": "y"},
            "set the secrets in the environment: DRYBEANS_API_TOKEN",
        ),
        (
            ["--project", "drybeans", "--tag", "1.2.3", "--dry-run"],
            {**SECRETS, "DRYBEANS_API_TOKEN": "two\nlines"},
            "DRYBEANS_API_TOKEN must be one line",
        ),
        (["--project", "Not_A_Project", "--tag", "1.2.3", "--dry-run"], SECRETS, "is not a Google Cloud project id"),
        (["--project", "drybeans", "--tag", "bad tag", "--dry-run"], SECRETS, "is not a valid image tag"),
        (["--project", "drybeans", "--tag", "1.2.3", "--database", "postgres"], SECRETS,
         "--database must be mysql or cloudsql, got 'postgres'"),
        (["--project", "drybeans", "--tag", "1.2.3", "--domain", "https://beans.example.org/"], SECRETS,
         "is not a domain name"),
        (["--project", "--tag", "1.2.3"], SECRETS, "--project needs a value"),
        (["--project", "drybeans", "--tag", "1.2.3", "--frobnicate"], SECRETS, "unknown argument '--frobnicate'"),
    ],
)
def test_refuses_incomplete_input_with_a_clear_message(
    basic_path: str, args: list[str], env: dict[str, str], message: str
) -> None:
    result = deploy(basic_path, *args, env=env)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_a_real_run_without_the_cloud_tools_stops_before_doing_anything(basic_path: str) -> None:
    result = deploy(basic_path, "--project", "drybeans", "--tag", "1.2.3")
    assert result.returncode == 2
    assert "gcloud is not installed (or use --dry-run)" in result.stderr
    assert result.stdout == ""


def test_help_describes_usage(basic_path: str) -> None:
    result = deploy(basic_path, "--help", env={})
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: deploy/gke/deploy.sh --project PROJECT --tag TAG")
    for word in ("--dry-run", "--database", "--domain", "--print-manifests", "DRYBEANS_API_TOKEN", "Autopilot",
                 "Workload Identity"):
        assert word in result.stdout


def test_script_is_valid_bash_and_executable() -> None:
    assert os.access(SCRIPT, os.X_OK)
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
