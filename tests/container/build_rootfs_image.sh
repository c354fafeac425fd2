#!/usr/bin/env bash
# Build drybeans-test/bookworm:latest, a minimal Debian bookworm image made with debootstrap and set
# up like this host to reach the package registries: its apt sources, and its CA bundle (the
# TLS-intercepting proxy's CA) for pip/uv/curl. Like the official Debian images it keeps no apt
# package cache (their docker-clean hook), so images built on it weigh what they would on the real
# ones. TEST SCAFFOLDING ONLY: nothing that ships uses it.
# Idempotent: skipped while the image's recipe label matches this script, the CA bundle and the apt
# sources. The debootstrap tarball is cached in CACHE_DIR so a rebuild only `docker import`s it.
set -euo pipefail

usage() { echo "usage: DOCKER_HOST=... $0 [CACHE_DIR]   (default: \${XDG_CACHE_HOME:-/var/cache}/drybeans-test)" >&2; }
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }
(($# <= 1)) || { usage; exit 2; }

tag="drybeans-test/bookworm:latest"
cache="$(realpath -m "${1:-${XDG_CACHE_HOME:-/var/cache}/drybeans-test}")"
tarball="$cache/bookworm-minbase.tar"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
host_ca="/etc/ssl/certs/ca-certificates.crt"
host_sources="/etc/apt/sources.list.d/debian.sources"

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "$host_ca" "$ctx/host-ca-bundle.crt"
if [[ -f "$host_sources" ]]; then
    cp "$host_sources" "$ctx/debian.sources"
else
    printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\n' "$mirror" >"$ctx/debian.sources"
fi
recipe="$(cat "${BASH_SOURCE[0]}" "$ctx/host-ca-bundle.crt" "$ctx/debian.sources" | sha256sum | cut -c1-16)"
if [[ "$(docker image inspect --format '{{index .Config.Labels "drybeans-test.recipe"}}' "$tag" 2>/dev/null)" == "$recipe" ]]; then
    echo "$tag is up to date" >&2
    exit 0
fi

if [[ ! -s "$tarball" ]]; then
    mkdir -p "$cache"
    root="$(mktemp -d "$cache/rootfs.XXXXXX")"
    echo "debootstrap bookworm into $root" >&2
    debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$mirror" >&2
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar --numeric-owner -C "$root" -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
    rm -rf "$root"
fi

docker import "$tarball" drybeans-test/bookworm-rootfs:latest >&2
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM drybeans-test/bookworm-rootfs:latest
COPY debian.sources /etc/apt/sources.list.d/debian.sources
COPY host-ca-bundle.crt /etc/ssl/host-ca-bundle.crt
RUN rm -f /etc/apt/sources.list \
 && printf 'Acquire::Check-Valid-Until "false";\nAcquire::Check-Date "false";\n' >/etc/apt/apt.conf.d/99drybeans-test \
 && printf '%s\n' 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
        'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
        'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";' >/etc/apt/apt.conf.d/docker-clean \
 && printf '[global]\ncert = /etc/ssl/host-ca-bundle.crt\n' >/etc/pip.conf
ENV LANG=C.UTF-8 \
    SSL_CERT_FILE=/etc/ssl/host-ca-bundle.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/host-ca-bundle.crt \
    CURL_CA_BUNDLE=/etc/ssl/host-ca-bundle.crt \
    PIP_CERT=/etc/ssl/host-ca-bundle.crt \
    UV_NATIVE_TLS=1
CMD ["bash"]
DOCKERFILE
docker build --quiet --label "drybeans-test.recipe=$recipe" --tag "$tag" "$ctx" >&2
echo "built $tag" >&2
