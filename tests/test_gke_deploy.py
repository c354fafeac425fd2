"""deploy/gke/deploy.sh: the commands its --dry-run prints, and its refusal of incomplete input.

The dry runs get a PATH holding only the few basic tools the script itself uses, without gcloud,
kubectl, docker or python: any attempt to really run one of them would fail the run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from deploy.k8s import render

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "deploy" / "gke" / "deploy.sh"
BASIC_TOOLS = ("bash", "cat", "cut", "dirname", "mktemp", "rm")
PASSWORDS = {
    "DRYBEANS_MYSQL_ROOT_PASSWORD": "root-pw-sentinel-5e1",
    "DRYBEANS_APP_DB_PASSWORD": "app-pw-sentinel-9c4",
    "DRYBEANS_MIGRATOR_DB_PASSWORD": "migrator-pw-sentinel-2ab",
}
REMOTE_IMAGE = "europe-central2-docker.pkg.dev/drybeans/drybeans-repo/drybeans:1.2.3"


@pytest.fixture(scope="module")
def basic_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A directory with links to the basic tools only: no cloud or cluster tool can run."""
    directory = tmp_path_factory.mktemp("bin")
    for tool in BASIC_TOOLS:
        found = shutil.which(tool)
        assert found is not None, f"{tool} is needed to run deploy.sh"
        (directory / tool).symlink_to(found)
    return str(directory)


def deploy(
    basic_path: str, *args: str, env: dict[str, str] | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """Run deploy.sh with only the basic tools on PATH and an empty gcloud/kube configuration."""
    home = Path(basic_path).parent / "home"
    home.mkdir(exist_ok=True)
    base = {"PATH": basic_path, "HOME": str(home), "CLOUDSDK_CONFIG": str(home / "gcloud"), "KUBECONFIG": ""}
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=cwd,
        env={**base, **(env if env is not None else PASSWORDS)},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def dry_run(basic_path: str) -> subprocess.CompletedProcess[str]:
    return deploy(basic_path, "--project", "drybeans", "--tag", "1.2.3", "--dry-run")


@pytest.fixture(scope="module")
def commands(dry_run: subprocess.CompletedProcess[str]) -> list[str]:
    assert dry_run.returncode == 0, dry_run.stderr
    lines = dry_run.stdout.splitlines()
    assert lines and all(line.startswith("+ ") for line in lines), dry_run.stdout
    return [line[2:] for line in lines]


def index_of(commands: list[str], *fragments: str) -> int:
    """Index of the first command containing every fragment."""
    for index, command in enumerate(commands):
        if all(fragment in command for fragment in fragments):
            return index
    raise AssertionError(f"no command contains {fragments}:\n" + "\n".join(commands))


def manifests_dir(commands: list[str]) -> str:
    render_command = commands[index_of(commands, "-m deploy.k8s.render")]
    match = re.search(r"--out=(\S+)", render_command)
    assert match is not None
    return match.group(1)


def test_dry_run_prints_the_tutorial_steps_in_order(commands: list[str]) -> None:
    steps = [
        ("gcloud services enable", "container.googleapis.com", "artifactregistry.googleapis.com", "--project=drybeans"),
        ("gcloud artifacts repositories describe drybeans-repo", "--location=europe-central2"),
        ("gcloud auth configure-docker europe-central2-docker.pkg.dev",),
        ("docker tag drybeans:1.2.3 " + REMOTE_IMAGE,),
        ("docker push " + REMOTE_IMAGE,),
        ("gcloud container clusters describe drybeans-cluster", "--region=europe-central2"),
        ("gcloud container clusters get-credentials drybeans-cluster", "--region=europe-central2"),
        ("-m deploy.k8s.render", "--image=" + REMOTE_IMAGE, "--namespace=drybeans"),
        ("kubectl apply -f", "namespace-drybeans.yaml"),
        ("kubectl create secret generic drybeans-db", "| kubectl apply -f -"),
        ("kubectl apply -f", "in (config,database)"),
        ("kubectl rollout status statefulset/drybeans-mysql",),
        ("kubectl delete job drybeans-migrate", "--ignore-not-found"),
        ("kubectl apply -f", "component=migration"),
        ("kubectl wait job/drybeans-migrate", "--for=condition=complete"),
        ("kubectl rollout status deployment/drybeans",),
        ("kubectl get service drybeans", "loadBalancer.ingress"),
    ]
    positions = [index_of(commands, *step) for step in steps]
    assert positions == sorted(positions), list(zip(positions, steps, strict=True))
    # The one command not listed above: applying everything, just before the service's rollout.
    final_apply = commands[index_of(commands, "kubectl rollout status deployment/drybeans") - 1]
    assert final_apply == f"kubectl apply -f {manifests_dir(commands)}"
    assert len(commands) == len(steps) + 1


def test_existing_registry_and_cluster_are_kept_and_missing_ones_created(commands: list[str]) -> None:
    repository = commands[index_of(commands, "gcloud artifacts repositories describe")]
    assert " || gcloud artifacts repositories create drybeans-repo " in repository
    assert "--repository-format=docker" in repository
    cluster = commands[index_of(commands, "gcloud container clusters describe")]
    assert cluster.endswith(
        "|| gcloud container clusters create-auto drybeans-cluster --project=drybeans --region=europe-central2"
    )


def test_every_kubectl_step_targets_the_rendered_manifests_and_the_namespace(commands: list[str]) -> None:
    directory = manifests_dir(commands)
    applies = [c for c in commands if c.startswith("kubectl apply -f ") and "| kubectl" not in c]
    assert len(applies) == 4
    assert all(c.startswith(f"kubectl apply -f {directory}") for c in applies)
    namespaced = [c for c in commands if c.startswith("kubectl") and "apply -f" not in c]
    assert namespaced and all("--namespace=drybeans" in c for c in namespaced)


def test_the_secret_is_built_from_the_environment_without_printing_a_password(
    dry_run: subprocess.CompletedProcess[str], commands: list[str]
) -> None:
    secret = commands[index_of(commands, "kubectl create secret generic drybeans-db")]
    for variable in PASSWORDS:
        assert f'<(printf %s "${variable}")' in secret
    for password in PASSWORDS.values():
        assert password not in dry_run.stdout
        assert password not in dry_run.stderr


def test_names_and_secret_keys_match_what_the_generator_renders(commands: list[str]) -> None:
    manifests = render.render_manifests(render.load_config(render.DEFAULT_CONFIG))
    rendered = {(m["kind"].lower(), m["metadata"]["name"]) for m in manifests}
    text = "\n".join(commands)
    for kind, name in re.findall(r"\b(statefulset|deployment|job)/([a-z0-9-]+)", text):
        assert (kind, name) in rendered
    assert ("service", re.search(r"kubectl get service (\S+)", text).group(1)) in rendered  # type: ignore[union-attr]
    referenced_keys = {
        entry["valueFrom"]["secretKeyRef"]["key"]
        for m in manifests
        if m["kind"] in {"Deployment", "StatefulSet", "Job"}
        for container in m["spec"]["template"]["spec"]["containers"]
        for entry in container.get("env", [])
        if "valueFrom" in entry
    }
    created_keys = set(re.findall(r"--from-file=([a-z-]+)=", text))
    assert created_keys == referenced_keys


def test_the_phase_selectors_split_the_manifests_as_the_script_expects() -> None:
    manifests = render.render_manifests(render.load_config(render.DEFAULT_CONFIG))
    components = {
        (m["kind"], m["metadata"]["name"]): m["metadata"]["labels"]["app.kubernetes.io/component"] for m in manifests
    }
    database_phase = {key for key, component in components.items() if component in {"config", "database"}}
    migration_phase = {key for key, component in components.items() if component == "migration"}
    assert database_phase == {
        ("ConfigMap", "drybeans-config"),
        ("ConfigMap", "drybeans-mysql-init"),
        ("Service", "drybeans-mysql"),
        ("NetworkPolicy", "drybeans-mysql"),
        ("StatefulSet", "drybeans-mysql"),
    }
    assert migration_phase == {("Job", "drybeans-migrate")}


def test_flags_override_environment_defaults(basic_path: str) -> None:
    env = {**PASSWORDS, "GCP_PROJECT": "from-env-project", "GCP_REGION": "us-central1", "DRYBEANS_TAG": "env-tag"}
    result = deploy(basic_path, "--dry-run", "--region", "europe-west4", "--cluster", "other-cluster", env=env)
    assert result.returncode == 0, result.stderr
    assert "docker push europe-west4-docker.pkg.dev/from-env-project/drybeans-repo/drybeans:env-tag" in result.stdout
    assert "create-auto other-cluster --project=from-env-project --region=europe-west4" in result.stdout
    assert "us-central1" not in result.stdout


def test_dry_run_works_from_another_directory(basic_path: str, tmp_path: Path) -> None:
    result = deploy(basic_path, "--project", "drybeans", "--tag", "1.2.3", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"--config={REPO}/deploy/k8s/config.yaml" in result.stdout


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--tag", "1.2.3", "--dry-run"], PASSWORDS, "--project is required (or set GCP_PROJECT)"),
        (["--project", "drybeans", "--dry-run"], PASSWORDS, "--tag is required (or set DRYBEANS_TAG)"),
        (
            ["--project", "drybeans", "--tag", "1.2.3", "--dry-run"],
            {"DRYBEANS_APP_DB_PASSWORD": "x"},
            "set the database passwords in the environment: DRYBEANS_MYSQL_ROOT_PASSWORD DRYBEANS_MIGRATOR_DB_PASSWORD",
        ),
        (["--project", "Not_A_Project", "--tag", "1.2.3", "--dry-run"], PASSWORDS, "is not a Google Cloud project id"),
        (["--project", "drybeans", "--tag", "bad tag", "--dry-run"], PASSWORDS, "is not a valid image tag"),
        (["--project", "--tag", "1.2.3"], PASSWORDS, "--project needs a value"),
        (["--project", "drybeans", "--tag", "1.2.3", "--frobnicate"], PASSWORDS, "unknown argument '--frobnicate'"),
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
    for word in ("--dry-run", "--region", "DRYBEANS_APP_DB_PASSWORD", "Autopilot"):
        assert word in result.stdout


def test_script_is_valid_bash_and_executable() -> None:
    assert os.access(SCRIPT, os.X_OK)
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
