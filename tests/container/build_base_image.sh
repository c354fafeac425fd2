#!/usr/bin/env bash
# Build a local stand-in for the base image that `bentoml containerize` asks for (bentoml 1.4.39,
# distro debian, python 3.11: `FROM python:3.11-slim`), since no registry is reachable here. Like the
# official image it has python/python3/pip on PATH (Debian's python3.11) and pip may install into the
# system (the generated Dockerfile runs `pip install uv`); `uv venv --python 3.11` finds
# /usr/bin/python3.11. It inherits the host's apt sources and CA bundle from drybeans-test/bookworm.
# TEST SCAFFOLDING ONLY: nothing that ships references it. Idempotent (recipe label).
set -euo pipefail

usage() { echo "usage: DOCKER_HOST=... $0 [CACHE_DIR] [TAG]   (defaults: \${XDG_CACHE_HOME:-/var/cache}/drybeans-test python:3.11-slim)" >&2; }
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }
(($# <= 2)) || { usage; exit 2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${1:-${XDG_CACHE_HOME:-/var/cache}/drybeans-test}"
tag="${2:-python:3.11-slim}"

"$here/build_rootfs_image.sh" "$cache"
recipe="$( (cat "${BASH_SOURCE[0]}"; docker image inspect --format '{{.Id}}' drybeans-test/bookworm:latest) | sha256sum | cut -c1-16)"
if [[ "$(docker image inspect --format '{{index .Config.Labels "drybeans-test.recipe"}}' "$tag" 2>/dev/null)" == "$recipe" ]]; then
    echo "$tag is up to date" >&2
    exit 0
fi

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM drybeans-test/bookworm:latest
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3.11 python3-pip python3-venv \
 && rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED \
 && ln -s /usr/bin/python3.11 /usr/local/bin/python \
 && ln -s /usr/bin/python3.11 /usr/local/bin/python3 \
 && ln -s /usr/bin/pip3 /usr/local/bin/pip \
 && rm -rf /var/lib/apt/lists/*
ENV PYTHON_VERSION=3.11
CMD ["python3"]
DOCKERFILE
docker build --label "drybeans-test.recipe=$recipe" --tag "$tag" "$ctx" >&2
echo "built $tag" >&2
