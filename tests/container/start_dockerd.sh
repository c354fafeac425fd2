#!/usr/bin/env bash
# Start (once) a Docker engine for the container tests and print the DOCKER_HOST to use.
# Installs what the tests need when absent: docker.io, docker-compose (1.29), debootstrap.
# Idempotent: a daemon already answering on DIR/docker.sock is reused.
set -euo pipefail

usage() { echo "usage: $0 [DIR]   (default DIR: /var/lib/drybeans-docker; holds docker.sock, data/, dockerd.log)" >&2; }
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }
(($# <= 1)) || { usage; exit 2; }

dir="$(realpath -m "${1:-/var/lib/drybeans-docker}")"
sock="$dir/docker.sock"
host="unix://$sock"
wait_seconds="${DOCKERD_WAIT_SECONDS:-60}"

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

answering() { DOCKER_HOST="$host" timeout 10 docker info >/dev/null 2>&1; }

if ! answering; then
    mkdir -p "$dir/data"
    rm -f "$sock"
    echo "starting dockerd on $sock (log: $dir/dockerd.log)" >&2
    setsid dockerd --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
        -H "$host" >>"$dir/dockerd.log" 2>&1 </dev/null &
    for ((i = 0; i < wait_seconds; i++)); do
        answering && break
        sleep 1
    done
    answering || { tail -n 30 "$dir/dockerd.log" >&2; echo "dockerd did not answer within ${wait_seconds}s" >&2; exit 1; }
fi

echo "$host"
