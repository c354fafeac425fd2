#!/usr/bin/env bash
# Build a MySQL-compatible image from Debian's mariadb-server on the debootstrap root, with an
# entrypoint honouring the official mysql image's interface (see mysql/docker-entrypoint.sh).
# Stands in for mysql:8.x in the Compose test, since no registry is reachable. TEST SCAFFOLDING ONLY.
# Idempotent (recipe label: this script, the entrypoint and the root image).
set -euo pipefail

usage() { echo "usage: DOCKER_HOST=... $0 [CACHE_DIR] [TAG]   (defaults: \${XDG_CACHE_HOME:-/var/cache}/drybeans-test drybeans-test/mysql:8)" >&2; }
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }
(($# <= 2)) || { usage; exit 2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${1:-${XDG_CACHE_HOME:-/var/cache}/drybeans-test}"
tag="${2:-drybeans-test/mysql:8}"

"$here/build_rootfs_image.sh" "$cache"
recipe="$( (cat "${BASH_SOURCE[0]}" "$here/mysql/docker-entrypoint.sh"
            docker image inspect --format '{{.Id}}' drybeans-test/bookworm:latest) | sha256sum | cut -c1-16)"
if [[ "$(docker image inspect --format '{{index .Config.Labels "drybeans-test.recipe"}}' "$tag" 2>/dev/null)" == "$recipe" ]]; then
    echo "$tag is up to date" >&2
    exit 0
fi

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "$here/mysql/docker-entrypoint.sh" "$ctx/"
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM drybeans-test/bookworm:latest
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mariadb-server \
 && rm -rf /var/lib/apt/lists/* /var/lib/mysql \
 && install -d -o mysql -g mysql /var/lib/mysql /run/mysqld /docker-entrypoint-initdb.d
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /var/lib/mysql
EXPOSE 3306
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["mariadbd"]
DOCKERFILE
docker build --label "drybeans-test.recipe=$recipe" --tag "$tag" "$ctx" >&2
echo "built $tag" >&2
