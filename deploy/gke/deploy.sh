#!/usr/bin/env bash
# Deploy the drybeans service to a GKE Autopilot cluster; run with --help for the steps.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: deploy/gke/deploy.sh --project PROJECT --tag TAG [options]

Deploys the drybeans BentoML image to GKE Autopilot:
  1. enables the Kubernetes Engine and Artifact Registry APIs;
  2. creates the Artifact Registry docker repository, unless it exists;
  3. tags the local image and pushes it to REGION-docker.pkg.dev/PROJECT/REPOSITORY/drybeans:TAG;
  4. creates the Autopilot cluster, unless it exists, and fetches its credentials;
  5. renders the manifests (python -m deploy.k8s.render) with that image;
  6. creates the namespace and the Secret drybeans-db from the password variables below;
  7. applies MySQL and waits for it, runs the migration Job and waits for it;
  8. applies the service, waits for its rollout and prints its external IP.
Each step can be re-run: existing resources are kept, manifests are re-applied.

Required (flag or environment variable):
  --project PROJECT     Google Cloud project id (GCP_PROJECT); the tutorial used "drybeans"
  --tag TAG             tag of the image to deploy (DRYBEANS_TAG), e.g. the bento version

Options:
  --region REGION       region of the registry and cluster (GCP_REGION, default europe-central2)
  --repository REPO     Artifact Registry repository (DRYBEANS_REPOSITORY, default drybeans-repo)
  --cluster NAME        Autopilot cluster (DRYBEANS_CLUSTER, default drybeans-cluster)
  --namespace NS        Kubernetes namespace (DRYBEANS_NAMESPACE, default drybeans)
  --local-image IMAGE   local image to push (default drybeans:TAG, as `bentoml containerize` names it)
  --config FILE         manifest config (default deploy/k8s/config.yaml)
  --dry-run             print every command instead of running it; needs no credentials
  -h, --help            show this help

Database passwords, from the environment only (required, also with --dry-run; never printed):
  DRYBEANS_MYSQL_ROOT_PASSWORD, DRYBEANS_APP_DB_PASSWORD, DRYBEANS_MIGRATOR_DB_PASSWORD
Keep them unchanged between deploys: MySQL creates its users from them on its first boot only.
PYTHON names the interpreter that renders the manifests (default .venv/bin/python, else python3).
EOF
}

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)

# Names fixed by the manifest generator (deploy/k8s/render.py).
IMAGE_NAME=drybeans
SERVER=drybeans
MYSQL=drybeans-mysql
MIGRATION_JOB=drybeans-migrate
SECRET=drybeans-db
COMPONENT_LABEL=app.kubernetes.io/component

PROJECT=${GCP_PROJECT:-}
TAG=${DRYBEANS_TAG:-}
REGION=${GCP_REGION:-europe-central2}
REPOSITORY=${DRYBEANS_REPOSITORY:-drybeans-repo}
CLUSTER=${DRYBEANS_CLUSTER:-drybeans-cluster}
NAMESPACE=${DRYBEANS_NAMESPACE:-drybeans}
LOCAL_IMAGE=
CONFIG=$REPO_ROOT/deploy/k8s/config.yaml
DRY_RUN=false

die() {
    echo "error: $*" >&2
    exit 1
}

usage_error() {
    echo "error: $*" >&2
    exit 2
}

step() {
    echo "==> $*" >&2
}

# Print one argument quoted for the shell only when it needs quoting.
quote() {
    if [[ $1 =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
        printf '%s' "$1"
    else
        printf "'%s'" "${1//\'/\'\\\'\'}"
    fi
}

# Print a command line as it would be typed.
show() {
    local line='+' arg
    for arg in "$@"; do
        line+=" $(quote "$arg")"
    done
    echo "$line"
}

# Run a command, or only print it with --dry-run.
run() {
    if [[ $DRY_RUN == true ]]; then
        show "$@"
    else
        "$@"
    fi
}

# describe_or_create DESCRIBE-COMMAND... -- CREATE-COMMAND...: create only what is missing.
describe_or_create() {
    local describe=()
    while [[ $1 != -- ]]; do
        describe+=("$1")
        shift
    done
    shift
    if [[ $DRY_RUN == true ]]; then
        echo "$(show "${describe[@]}") >/dev/null 2>&1 || $(show "$@" | cut -c3-)"
    elif ! "${describe[@]}" >/dev/null 2>&1; then
        "$@"
    fi
}

need_value() {
    [[ $# -ge 2 && -n $2 && $2 != --* ]] || usage_error "$1 needs a value (see --help)"
}

parse_args() {
    while [[ $# -gt 0 ]]; do
        case $1 in
            --project) need_value "$@"; PROJECT=$2; shift 2 ;;
            --tag) need_value "$@"; TAG=$2; shift 2 ;;
            --region) need_value "$@"; REGION=$2; shift 2 ;;
            --repository) need_value "$@"; REPOSITORY=$2; shift 2 ;;
            --cluster) need_value "$@"; CLUSTER=$2; shift 2 ;;
            --namespace) need_value "$@"; NAMESPACE=$2; shift 2 ;;
            --local-image) need_value "$@"; LOCAL_IMAGE=$2; shift 2 ;;
            --config) need_value "$@"; CONFIG=$2; shift 2 ;;
            --dry-run) DRY_RUN=true; shift ;;
            -h | --help) usage; exit 0 ;;
            *) usage_error "unknown argument '$1' (see --help)" ;;
        esac
    done
}

check_parameters() {
    [[ -n $PROJECT ]] || usage_error "--project is required (or set GCP_PROJECT); the tutorial used --project drybeans"
    [[ -n $TAG ]] || usage_error "--tag is required (or set DRYBEANS_TAG): the tag of the local image drybeans:TAG to deploy"
    [[ $PROJECT =~ ^[a-z][a-z0-9-]{4,28}[a-z0-9]$ ]] || usage_error "--project '$PROJECT' is not a Google Cloud project id"
    [[ $TAG =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || usage_error "--tag '$TAG' is not a valid image tag"
    [[ $NAMESPACE =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] || usage_error "--namespace '$NAMESPACE' is not a valid Kubernetes name"
    local missing=() variable
    for variable in DRYBEANS_MYSQL_ROOT_PASSWORD DRYBEANS_APP_DB_PASSWORD DRYBEANS_MIGRATOR_DB_PASSWORD; do
        [[ -n ${!variable:-} ]] || missing+=("$variable")
    done
    [[ ${#missing[@]} -eq 0 ]] || usage_error "set the database passwords in the environment: ${missing[*]} (see --help)"
    [[ $CONFIG == /* ]] || CONFIG=$PWD/$CONFIG
    [[ -f $CONFIG ]] || usage_error "--config $CONFIG does not exist"
    if [[ $DRY_RUN == false ]]; then
        local tool
        for tool in gcloud docker kubectl; do
            command -v "$tool" >/dev/null || usage_error "$tool is not installed (or use --dry-run)"
        done
    fi
}

push_image() {
    step "Pushing $LOCAL_IMAGE to $REMOTE_IMAGE"
    describe_or_create \
        gcloud artifacts repositories describe "$REPOSITORY" --project="$PROJECT" --location="$REGION" -- \
        gcloud artifacts repositories create "$REPOSITORY" --project="$PROJECT" --location="$REGION" \
        --repository-format=docker --description="drybeans service images"
    run gcloud auth configure-docker "$REGION-docker.pkg.dev" --quiet
    run docker tag "$LOCAL_IMAGE" "$REMOTE_IMAGE"
    run docker push "$REMOTE_IMAGE"
}

prepare_cluster() {
    step "Preparing the Autopilot cluster $CLUSTER"
    describe_or_create \
        gcloud container clusters describe "$CLUSTER" --project="$PROJECT" --region="$REGION" -- \
        gcloud container clusters create-auto "$CLUSTER" --project="$PROJECT" --region="$REGION"
    run gcloud container clusters get-credentials "$CLUSTER" --project="$PROJECT" --region="$REGION"
}

# The Secret is built from the environment through pipes: no password on a command line.
apply_secret() {
    step "Creating the Secret $SECRET"
    if [[ $DRY_RUN == true ]]; then
        echo "+ kubectl create secret generic $SECRET --namespace=$NAMESPACE" \
            "--from-file=mysql-root-password=<(printf %s \"\$DRYBEANS_MYSQL_ROOT_PASSWORD\")" \
            "--from-file=app-password=<(printf %s \"\$DRYBEANS_APP_DB_PASSWORD\")" \
            "--from-file=migrator-password=<(printf %s \"\$DRYBEANS_MIGRATOR_DB_PASSWORD\")" \
            "--dry-run=client --output=yaml | kubectl apply -f -"
        return
    fi
    kubectl create secret generic "$SECRET" --namespace="$NAMESPACE" \
        --from-file=mysql-root-password=<(printf %s "$DRYBEANS_MYSQL_ROOT_PASSWORD") \
        --from-file=app-password=<(printf %s "$DRYBEANS_APP_DB_PASSWORD") \
        --from-file=migrator-password=<(printf %s "$DRYBEANS_MIGRATOR_DB_PASSWORD") \
        --dry-run=client --output=yaml | kubectl apply -f -
}

deploy_database() {
    step "Deploying MySQL"
    run kubectl apply -f "$MANIFESTS" --selector="$COMPONENT_LABEL in (config,database)"
    run kubectl rollout status "statefulset/$MYSQL" --namespace="$NAMESPACE" --timeout=15m
}

# A Job's pod template cannot change, so each deploy replaces the previous migration Job.
migrate_schema() {
    step "Migrating the schema"
    run kubectl delete job "$MIGRATION_JOB" --namespace="$NAMESPACE" --ignore-not-found
    run kubectl apply -f "$MANIFESTS" --selector="$COMPONENT_LABEL=migration"
    run kubectl wait "job/$MIGRATION_JOB" --namespace="$NAMESPACE" --for=condition=complete --timeout=11m ||
        die "the migration did not complete; see: kubectl logs job/$MIGRATION_JOB --namespace=$NAMESPACE"
}

deploy_service() {
    step "Deploying the service"
    run kubectl apply -f "$MANIFESTS"
    run kubectl rollout status "deployment/$SERVER" --namespace="$NAMESPACE" --timeout=10m
}

print_external_ip() {
    step "Waiting for the external IP of the service $SERVER"
    local get=(kubectl get service "$SERVER" --namespace="$NAMESPACE"
        --output=jsonpath='{.status.loadBalancer.ingress[0].ip}')
    if [[ $DRY_RUN == true ]]; then
        show "${get[@]}"
        return
    fi
    local ip
    for _ in $(seq 60); do
        ip=$("${get[@]}")
        if [[ -n $ip ]]; then
            echo "drybeans is serving at http://$ip/ (POST /predict)"
            return
        fi
        sleep 5
    done
    die "no external IP after 5 minutes; check: kubectl get service $SERVER --namespace=$NAMESPACE"
}

main() {
    parse_args "$@"
    check_parameters
    LOCAL_IMAGE=${LOCAL_IMAGE:-$IMAGE_NAME:$TAG}
    REMOTE_IMAGE=$REGION-docker.pkg.dev/$PROJECT/$REPOSITORY/$IMAGE_NAME:$TAG
    PYTHON=${PYTHON:-$REPO_ROOT/.venv/bin/python}
    [[ -x $PYTHON ]] || PYTHON=python3
    MANIFESTS=$(mktemp -d "${TMPDIR:-/tmp}/drybeans-manifests.XXXXXX")
    trap 'rm -rf "$MANIFESTS"' EXIT
    cd "$REPO_ROOT"

    step "Enabling the APIs in project $PROJECT"
    run gcloud services enable container.googleapis.com artifactregistry.googleapis.com --project="$PROJECT"
    push_image
    prepare_cluster
    step "Rendering the manifests into $MANIFESTS"
    run "$PYTHON" -m deploy.k8s.render --config="$CONFIG" --image="$REMOTE_IMAGE" \
        --namespace="$NAMESPACE" --out="$MANIFESTS"
    run kubectl apply -f "$MANIFESTS/namespace-$NAMESPACE.yaml"
    apply_secret
    deploy_database
    migrate_schema
    deploy_service
    print_external_ip
}

main "$@"
