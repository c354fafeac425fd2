#!/usr/bin/env bash
# Deploy the drybeans service to a GKE Autopilot cluster; run with --help for the steps.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: deploy/gke/deploy.sh --project PROJECT --tag TAG [--database mysql|cloudsql] [options]

Deploys the drybeans BentoML image to GKE Autopilot:
  1. enables the APIs (Kubernetes Engine, Artifact Registry; for Cloud SQL also Cloud SQL Admin and
     Service Networking);
  2. creates the Artifact Registry docker repository, unless it exists;
  3. tags the local image and pushes it to REGION-docker.pkg.dev/PROJECT/REPOSITORY/drybeans:TAG;
  4. creates the Autopilot cluster, unless it exists, and fetches its credentials;
  5. with --database cloudsql: connects the VPC to Google's services (private services access), creates
     the Cloud SQL for MySQL 8.4 instance with a private IP only, its database, the migrator's and the
     service's users, and a Google service account with roles/cloudsql.client that the pods' Kubernetes
     service account may act as (Workload Identity); each unless it exists;
  6. with --domain: reserves the global address drybeans-ip for the HTTPS load balancer;
  7. renders the manifests (kubectl kustomize) from deploy/k8s/overlays/DATABASE with the image, the
     namespace and the settings above;
  8. creates the namespace and the Secrets drybeans-db and drybeans-api from the variables below, and
     drybeans-tokens (named tokens, empty at first) unless it exists;
  9. applies the configuration (and MySQL, waiting for it), runs the migration Job and waits for it;
 10. applies the service, waits for its rollout and prints its address (with --domain) or how to
     reach it from inside the cluster, and how to reach V2 over gRPC (port 3002, inside the cluster only).
Each step can be re-run: existing resources are kept, manifests are re-applied.

Required (flag or environment variable):
  --project PROJECT     Google Cloud project id (GCP_PROJECT); the tutorial used "drybeans"
  --tag TAG             tag of the image to deploy (DRYBEANS_TAG), e.g. the bento version

Options:
  --database DB         mysql: MySQL in the cluster, a quick start (the default); cloudsql: Cloud SQL
                        through the Cloud SQL Auth Proxy, for production (DRYBEANS_DATABASE)
  --domain DOMAIN       serve HTTPS at DOMAIN through a GKE Ingress with a Google-managed certificate
                        (DRYBEANS_DOMAIN); point the domain's DNS A record at the printed address. Without
                        it the service has no public address (plain HTTP would carry the token in clear);
                        with it, predictions need the token too
  --region REGION       region of the registry, cluster and Cloud SQL (GCP_REGION, default europe-central2)
  --repository REPO     Artifact Registry repository (DRYBEANS_REPOSITORY, default drybeans-repo)
  --cluster NAME        Autopilot cluster (DRYBEANS_CLUSTER, default drybeans-cluster)
  --namespace NS        Kubernetes namespace (DRYBEANS_NAMESPACE, default drybeans)
  --sql-instance NAME   Cloud SQL instance (DRYBEANS_SQL_INSTANCE, default drybeans-sql)
  --sql-tier TIER       Cloud SQL machine type (DRYBEANS_SQL_TIER, default db-custom-1-3840)
  --network NETWORK     VPC of the cluster and of Cloud SQL's private IP (DRYBEANS_NETWORK, default default)
  --local-image IMAGE   local image to push (default drybeans:TAG, as `bentoml containerize` names it)
  --print-manifests     render the manifests to stdout and stop (needs kubectl, no cloud access)
  --dry-run             print every command instead of running it; needs no credentials
  -h, --help            show this help

Secrets, from the environment only (required, also with --dry-run; never printed):
  DRYBEANS_APP_DB_PASSWORD, DRYBEANS_MIGRATOR_DB_PASSWORD   the service's and the migrator's MySQL users
  DRYBEANS_MYSQL_ROOT_PASSWORD                              MySQL's root user (--database mysql only)
  DRYBEANS_API_TOKEN                                        the bearer token for reads and /metrics (and
                                                            predictions with --domain); the service refuses
                                                            to start without it
Keep the passwords unchanged between deploys: the database users are created from them once.
EOF
}

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)

# Names fixed by the manifests (deploy/k8s/).
IMAGE_NAME=drybeans
SERVER=drybeans
KUBERNETES_SERVICE_ACCOUNT=drybeans
MYSQL=drybeans-mysql
MIGRATION_JOB=drybeans-migrate
DB_SECRET=drybeans-db
API_SECRET=drybeans-api
TOKENS_SECRET=drybeans-tokens
DATABASE_NAME=drybeans
APP_DB_USER=drybeans_app
MIGRATOR_DB_USER=drybeans_migrator
STATIC_ADDRESS=drybeans-ip
GRPC_PORT=3002
COMPONENT_LABEL=app.kubernetes.io/component
# Cloud SQL: the Google service account the proxy acts as, and the address range in the VPC that Google's
# services (Cloud SQL's private IPs) are given.
GCP_SERVICE_ACCOUNT_NAME=drybeans-sql
SERVICES_RANGE=google-managed-services-drybeans

PROJECT=${GCP_PROJECT:-}
TAG=${DRYBEANS_TAG:-}
DATABASE=${DRYBEANS_DATABASE:-mysql}
DOMAIN=${DRYBEANS_DOMAIN:-}
REGION=${GCP_REGION:-europe-central2}
REPOSITORY=${DRYBEANS_REPOSITORY:-drybeans-repo}
CLUSTER=${DRYBEANS_CLUSTER:-drybeans-cluster}
NAMESPACE=${DRYBEANS_NAMESPACE:-drybeans}
SQL_INSTANCE=${DRYBEANS_SQL_INSTANCE:-drybeans-sql}
SQL_TIER=${DRYBEANS_SQL_TIER:-db-custom-1-3840}
NETWORK=${DRYBEANS_NETWORK:-default}
LOCAL_IMAGE=
PRINT_MANIFESTS=false
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
            --database) need_value "$@"; DATABASE=$2; shift 2 ;;
            --domain) need_value "$@"; DOMAIN=$2; shift 2 ;;
            --region) need_value "$@"; REGION=$2; shift 2 ;;
            --repository) need_value "$@"; REPOSITORY=$2; shift 2 ;;
            --cluster) need_value "$@"; CLUSTER=$2; shift 2 ;;
            --namespace) need_value "$@"; NAMESPACE=$2; shift 2 ;;
            --sql-instance) need_value "$@"; SQL_INSTANCE=$2; shift 2 ;;
            --sql-tier) need_value "$@"; SQL_TIER=$2; shift 2 ;;
            --network) need_value "$@"; NETWORK=$2; shift 2 ;;
            --local-image) need_value "$@"; LOCAL_IMAGE=$2; shift 2 ;;
            --print-manifests) PRINT_MANIFESTS=true; shift ;;
            --dry-run) DRY_RUN=true; shift ;;
            -h | --help) usage; exit 0 ;;
            *) usage_error "unknown argument '$1' (see --help)" ;;
        esac
    done
}

# The secret variables this database needs.
secret_variables() {
    [[ $DATABASE == mysql ]] && echo DRYBEANS_MYSQL_ROOT_PASSWORD
    echo DRYBEANS_APP_DB_PASSWORD DRYBEANS_MIGRATOR_DB_PASSWORD DRYBEANS_API_TOKEN
}

check_parameters() {
    [[ -n $PROJECT ]] || usage_error "--project is required (or set GCP_PROJECT); the tutorial used --project drybeans"
    [[ -n $TAG ]] || usage_error "--tag is required (or set DRYBEANS_TAG): the tag of the local image drybeans:TAG to deploy"
    [[ $PROJECT =~ ^[a-z][a-z0-9-]{4,28}[a-z0-9]$ ]] || usage_error "--project '$PROJECT' is not a Google Cloud project id"
    [[ $TAG =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || usage_error "--tag '$TAG' is not a valid image tag"
    [[ $DATABASE == mysql || $DATABASE == cloudsql ]] || usage_error "--database must be mysql or cloudsql, got '$DATABASE'"
    [[ $NAMESPACE =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] || usage_error "--namespace '$NAMESPACE' is not a valid Kubernetes name"
    [[ $SQL_INSTANCE =~ ^[a-z][a-z0-9-]{0,96}[a-z0-9]$ ]] || usage_error "--sql-instance '$SQL_INSTANCE' is not a valid Cloud SQL instance name"
    [[ -z $DOMAIN || $DOMAIN =~ ^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]{2,63}$ ]] ||
        usage_error "--domain '$DOMAIN' is not a domain name (lower case, no scheme or path)"
    [[ $PRINT_MANIFESTS == true ]] && return
    local missing=() variable
    for variable in $(secret_variables); do
        [[ -n ${!variable:-} ]] || missing+=("$variable")
    done
    [[ ${#missing[@]} -eq 0 ]] || usage_error "set the secrets in the environment: ${missing[*]} (see --help)"
    for variable in $(secret_variables); do
        [[ ${!variable} != *$'\n'* ]] || usage_error "$variable must be one line (Secrets are written as env files)"
    done
    if [[ $DRY_RUN == false ]]; then
        local tool
        for tool in gcloud docker kubectl; do
            command -v "$tool" >/dev/null || usage_error "$tool is not installed (or use --dry-run)"
        done
    fi
}

enable_apis() {
    step "Enabling the APIs in project $PROJECT"
    local apis=(container.googleapis.com artifactregistry.googleapis.com)
    [[ $DATABASE == cloudsql ]] && apis+=(sqladmin.googleapis.com servicenetworking.googleapis.com)
    run gcloud services enable "${apis[@]}" --project="$PROJECT"
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
        gcloud container clusters create-auto "$CLUSTER" --project="$PROJECT" --region="$REGION" \
        --network="$NETWORK"
    run gcloud container clusters get-credentials "$CLUSTER" --project="$PROJECT" --region="$REGION"
}

# Cloud SQL's private IP lives in a range of the VPC peered with Google's service producer network.
connect_private_services() {
    describe_or_create \
        gcloud compute addresses describe "$SERVICES_RANGE" --global --project="$PROJECT" -- \
        gcloud compute addresses create "$SERVICES_RANGE" --global --project="$PROJECT" \
        --purpose=VPC_PEERING --prefix-length=16 --network="$NETWORK"
    local list=(gcloud services vpc-peerings list --service=servicenetworking.googleapis.com
        --network="$NETWORK" --project="$PROJECT" --format='value(reservedPeeringRanges)')
    local connect=(gcloud services vpc-peerings connect --service=servicenetworking.googleapis.com
        --ranges="$SERVICES_RANGE" --network="$NETWORK" --project="$PROJECT")
    if [[ $DRY_RUN == true ]]; then
        echo "$(show "${list[@]}") | grep -q $SERVICES_RANGE || $(show "${connect[@]}" | cut -c3-)"
    elif ! "${list[@]}" | grep -q "$SERVICES_RANGE"; then
        "${connect[@]}"
    fi
}

# gcloud reads the password from a flags file on a pipe: it is never on a command line.
# Prints the YAML flags file for the password in the variable named $1.
password_flags_file() {
    local value=${!1}
    value=${value//\\/\\\\}
    printf -- '--password: "%s"\n' "${value//\"/\\\"}"
}

# create_database_user USER PASSWORD-VARIABLE
create_database_user() {
    local user=$1 variable=$2
    local describe=(gcloud sql users describe "$user" --host=% --instance="$SQL_INSTANCE" --project="$PROJECT")
    local create=(gcloud sql users create "$user" --host=% --instance="$SQL_INSTANCE" --project="$PROJECT")
    if [[ $DRY_RUN == true ]]; then
        echo "$(show "${describe[@]}") >/dev/null 2>&1 || $(show "${create[@]}" | cut -c3-)" \
            "--flags-file=<(password_flags_file $variable)"
    elif ! "${describe[@]}" >/dev/null 2>&1; then
        "${create[@]}" --flags-file=<(password_flags_file "$variable")
    fi
}

prepare_cloud_sql() {
    step "Preparing Cloud SQL: instance $SQL_INSTANCE, its database and users, the proxy's identity"
    connect_private_services
    # Regional (a standby in a second zone), daily backups with binary logs for point-in-time recovery:
    # what a single MySQL pod does not give.
    describe_or_create \
        gcloud sql instances describe "$SQL_INSTANCE" --project="$PROJECT" -- \
        gcloud sql instances create "$SQL_INSTANCE" --project="$PROJECT" --region="$REGION" \
        --database-version=MYSQL_8_4 --edition=enterprise --tier="$SQL_TIER" \
        --network="projects/$PROJECT/global/networks/$NETWORK" --no-assign-ip \
        --availability-type=regional --backup-start-time=02:00 --enable-bin-log --storage-auto-increase
    describe_or_create \
        gcloud sql databases describe "$DATABASE_NAME" --instance="$SQL_INSTANCE" --project="$PROJECT" -- \
        gcloud sql databases create "$DATABASE_NAME" --instance="$SQL_INSTANCE" --project="$PROJECT" \
        --charset=utf8mb4
    create_database_user "$MIGRATOR_DB_USER" DRYBEANS_MIGRATOR_DB_PASSWORD
    create_database_user "$APP_DB_USER" DRYBEANS_APP_DB_PASSWORD
    describe_or_create \
        gcloud iam service-accounts describe "$GCP_SERVICE_ACCOUNT" --project="$PROJECT" -- \
        gcloud iam service-accounts create "$GCP_SERVICE_ACCOUNT_NAME" --project="$PROJECT" \
        --display-name="drybeans Cloud SQL Auth Proxy"
    run gcloud projects add-iam-policy-binding "$PROJECT" --member="serviceAccount:$GCP_SERVICE_ACCOUNT" \
        --role=roles/cloudsql.client --condition=None
    run gcloud iam service-accounts add-iam-policy-binding "$GCP_SERVICE_ACCOUNT" --project="$PROJECT" \
        --role=roles/iam.workloadIdentityUser \
        --member="serviceAccount:$PROJECT.svc.id.goog[$NAMESPACE/$KUBERNETES_SERVICE_ACCOUNT]"
}

reserve_static_address() {
    step "Reserving the global address $STATIC_ADDRESS for $DOMAIN"
    describe_or_create \
        gcloud compute addresses describe "$STATIC_ADDRESS" --global --project="$PROJECT" -- \
        gcloud compute addresses create "$STATIC_ADDRESS" --global --project="$PROJECT"
}

# "../" as many times as $1 (an absolute directory) is deep: kustomize takes only relative paths.
path_to_root() {
    local slashes=${1//[^\/]/} up=
    for ((i = 0; i < ${#slashes}; i++)); do
        up+=../
    done
    printf '%s' "$up"
}

# The kustomization of this deploy: the overlay, the ingress component with --domain, and only what
# varies between deploys (namespace, image, Cloud SQL instance, Google service account, domain).
write_kustomization() {
    local to_repo
    to_repo=$(path_to_root "$MANIFESTS")${REPO_ROOT#/}
    {
        echo "apiVersion: kustomize.config.k8s.io/v1beta1"
        echo "kind: Kustomization"
        echo "namespace: $NAMESPACE"
        echo "resources:"
        echo "  - $to_repo/deploy/k8s/overlays/$DATABASE"
        if [[ -n $DOMAIN ]]; then
            echo "components:"
            echo "  - $to_repo/deploy/k8s/components/ingress"
        fi
        echo "images:"
        echo "  - name: $IMAGE_NAME"
        echo "    newName: ${REMOTE_IMAGE%:*}"
        echo "    newTag: \"$TAG\""
        if [[ $DATABASE == cloudsql ]]; then
            echo "configMapGenerator:"
            echo "  - name: drybeans-cloudsql"
            echo "    behavior: merge"
            echo "    literals:"
            echo "      - instance-connection-name=$PROJECT:$REGION:$SQL_INSTANCE"
        fi
        if [[ $DATABASE == cloudsql || -n $DOMAIN ]]; then
            echo "patches:"
        fi
        if [[ $DATABASE == cloudsql ]]; then
            echo "  - target: {kind: ServiceAccount, name: $KUBERNETES_SERVICE_ACCOUNT}"
            echo "    patch: |-"
            echo "      - {op: replace, path: /metadata/annotations/iam.gke.io~1gcp-service-account, value: $GCP_SERVICE_ACCOUNT}"
        fi
        if [[ -n $DOMAIN ]]; then
            echo "  - target: {kind: ManagedCertificate, name: $SERVER}"
            echo "    patch: |-"
            echo "      - {op: replace, path: /spec/domains, value: [$DOMAIN]}"
        fi
    } >"$MANIFESTS/kustomization.yaml"
}

apply_secrets() {
    step "Creating the Secrets $DB_SECRET, $API_SECRET and, unless it exists, $TOKENS_SECRET"
    local db_keys=(app-password=DRYBEANS_APP_DB_PASSWORD migrator-password=DRYBEANS_MIGRATOR_DB_PASSWORD)
    [[ $DATABASE == mysql ]] && db_keys=(mysql-root-password=DRYBEANS_MYSQL_ROOT_PASSWORD "${db_keys[@]}")
    apply_secret "$DB_SECRET" "${db_keys[@]}"
    apply_secret "$API_SECRET" token=DRYBEANS_API_TOKEN
    # The named tokens' file (hashes only), which the pods mount: empty at first, then the operators' (docs/api.md:
    # "Tokens and scopes"), so an existing one is never replaced.
    describe_or_create kubectl get secret "$TOKENS_SECRET" --namespace="$NAMESPACE" -- \
        kubectl create secret generic "$TOKENS_SECRET" --namespace="$NAMESPACE" --from-literal=tokens=
}

# apply_secret NAME KEY=VARIABLE...: create or update the Secret NAME, each key from the named variable.
# The values go through a pipe as an env file, written by printf, a shell builtin: never on a command line.
apply_secret() {
    local name=$1 pair
    shift
    if [[ $DRY_RUN == true ]]; then
        local format= variables=
        for pair in "$@"; do
            format+="${pair%%=*}=%s\\n"
            variables+=" \"\$${pair#*=}\""
        done
        echo "+ kubectl create secret generic $name --namespace=$NAMESPACE" \
            "--from-env-file=<(printf '$format'$variables) --dry-run=client --output=yaml | kubectl apply -f -"
        return
    fi
    kubectl create secret generic "$name" --namespace="$NAMESPACE" \
        --from-env-file=<(for pair in "$@"; do
            local variable=${pair#*=}
            printf '%s=%s\n' "${pair%%=*}" "${!variable}"
        done) \
        --dry-run=client --output=yaml | kubectl apply -f -
}

deploy_configuration() {
    step "Applying the configuration and, with --database mysql, MySQL"
    run kubectl apply -f "$MANIFESTS/manifests.yaml" --selector="$COMPONENT_LABEL notin (server,migration,ingress)"
    if [[ $DATABASE == mysql ]]; then
        run kubectl rollout status "statefulset/$MYSQL" --namespace="$NAMESPACE" --timeout=15m
    fi
}

# A Job's pod template cannot change, so each deploy replaces the previous migration Job.
migrate_schema() {
    step "Migrating the schema"
    run kubectl delete job "$MIGRATION_JOB" --namespace="$NAMESPACE" --ignore-not-found
    run kubectl apply -f "$MANIFESTS/manifests.yaml" --selector="$COMPONENT_LABEL=migration"
    run kubectl wait "job/$MIGRATION_JOB" --namespace="$NAMESPACE" --for=condition=complete --timeout=11m ||
        die "the migration did not complete; see: kubectl logs job/$MIGRATION_JOB --all-containers --namespace=$NAMESPACE"
}

deploy_service() {
    step "Deploying the service"
    run kubectl apply -f "$MANIFESTS/manifests.yaml"
    run kubectl rollout status "statefulset/$SERVER" --namespace="$NAMESPACE" --timeout=15m
}

# wait_for_address DESCRIPTION COMMAND...: print the address COMMAND prints, once it prints one.
wait_for_address() {
    local description=$1
    shift
    if [[ $DRY_RUN == true ]]; then
        show "$@"
        return
    fi
    local address
    for _ in $(seq 60); do
        address=$("$@")
        if [[ -n $address ]]; then
            echo "$description $address"
            return
        fi
        sleep 5
    done
    die "no address after 5 minutes; check: $*"
}

print_address() {
    if [[ -n $DOMAIN ]]; then
        step "The HTTPS address: point the DNS A record of $DOMAIN at it; the certificate follows (up to an hour)"
        wait_for_address "drybeans will serve at https://$DOMAIN/ from" \
            gcloud compute addresses describe "$STATIC_ADDRESS" --global --project="$PROJECT" --format='value(address)'
    else
        # Without TLS the bearer token would cross the network in clear: no public address without --domain.
        step "No public address without --domain: the service is reachable inside the cluster only;" \
            "from here: kubectl port-forward service/$SERVER 3000:80 --namespace=$NAMESPACE"
        run kubectl get service "$SERVER" --namespace="$NAMESPACE"
    fi
    # The Ingress carries HTTPS to the API port only (GKE's load balancer needs TLS to a pod for HTTP/2).
    step "V2 over gRPC stays inside the cluster (service/$SERVER port $GRPC_PORT, plaintext);" \
        "from here: kubectl port-forward service/$SERVER $GRPC_PORT:$GRPC_PORT --namespace=$NAMESPACE"
}

main() {
    parse_args "$@"
    check_parameters
    LOCAL_IMAGE=${LOCAL_IMAGE:-$IMAGE_NAME:$TAG}
    REMOTE_IMAGE=$REGION-docker.pkg.dev/$PROJECT/$REPOSITORY/$IMAGE_NAME:$TAG
    GCP_SERVICE_ACCOUNT=$GCP_SERVICE_ACCOUNT_NAME@$PROJECT.iam.gserviceaccount.com
    MANIFESTS=$(cd "$(mktemp -d "${TMPDIR:-/tmp}/drybeans-manifests.XXXXXX")" && pwd -P)
    trap 'rm -rf "$MANIFESTS"' EXIT
    write_kustomization
    if [[ $PRINT_MANIFESTS == true ]]; then
        kubectl kustomize "$MANIFESTS"
        return
    fi

    enable_apis
    push_image
    prepare_cluster
    [[ $DATABASE == cloudsql ]] && prepare_cloud_sql
    [[ -n $DOMAIN ]] && reserve_static_address
    step "Rendering the manifests into $MANIFESTS/manifests.yaml"
    run kubectl kustomize "$MANIFESTS" --output="$MANIFESTS/manifests.yaml"
    run kubectl apply -f "$MANIFESTS/manifests.yaml" --selector="$COMPONENT_LABEL=namespace"
    apply_secrets
    deploy_configuration
    migrate_schema
    deploy_service
    print_address
}

main "$@"
