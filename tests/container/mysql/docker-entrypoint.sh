#!/usr/bin/env bash
# Entrypoint of the MariaDB stand-in for the official mysql image (test scaffolding only).
# Honours the same interface: MYSQL_ROOT_PASSWORD (or MYSQL_ALLOW_EMPTY_PASSWORD=yes),
# MYSQL_DATABASE, MYSQL_USER + MYSQL_PASSWORD, and /docker-entrypoint-initdb.d/*.sh|*.sql run once
# on the first start against a socket-only server; data in /var/lib/mysql; serves on 3306.
set -euo pipefail

datadir=/var/lib/mysql
socket=/run/mysqld/mysqld.sock

log() { echo "entrypoint: $*" >&2; }

# SQL string literal / identifier quoting for values taken from the environment.
sql_str() { local v=${1//\\/\\\\}; printf "'%s'" "${v//\'/\\\'}"; }
# shellcheck disable=SC2016  # the backticks are MySQL's identifier quotes, not a command substitution
sql_ident() { printf '`%s`' "${1//\`/\`\`}"; }

root_sql() { mariadb --protocol=socket --socket="$socket" -uroot ${MYSQL_ROOT_PASSWORD:+-p"$MYSQL_ROOT_PASSWORD"} "$@"; }

initialise() {
    if [[ -z "${MYSQL_ROOT_PASSWORD:-}" && "${MYSQL_ALLOW_EMPTY_PASSWORD:-}" != "yes" ]]; then
        log "database is uninitialised: set MYSQL_ROOT_PASSWORD (or MYSQL_ALLOW_EMPTY_PASSWORD=yes)"
        exit 1
    fi
    log "initialising $datadir"
    mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db \
        --auth-root-authentication-method=normal >/dev/null
    mariadbd --user=mysql --datadir="$datadir" --socket="$socket" --skip-networking &
    local pid=$!
    local waited=0
    until mariadb-admin --socket="$socket" -uroot ping --silent >/dev/null 2>&1; do
        ((++waited <= 60)) || { log "the initialisation server did not start within 60 s"; exit 1; }
        sleep 1
    done
    local sql host
    host="$(sql_str "$(hostname)")"
    sql="DROP USER IF EXISTS 'root'@'127.0.0.1', 'root'@'::1', 'root'@$host;"
    if [[ -n "${MYSQL_ROOT_PASSWORD:-}" ]]; then
        local pw; pw="$(sql_str "$MYSQL_ROOT_PASSWORD")"
        sql+="ALTER USER 'root'@'localhost' IDENTIFIED BY $pw;"
        sql+="CREATE USER 'root'@'%' IDENTIFIED BY $pw; GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    else
        sql+="CREATE USER 'root'@'%'; GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    fi
    if [[ -n "${MYSQL_DATABASE:-}" ]]; then
        sql+="CREATE DATABASE IF NOT EXISTS $(sql_ident "$MYSQL_DATABASE");"
    fi
    if [[ -n "${MYSQL_USER:-}" && -n "${MYSQL_PASSWORD:-}" ]]; then
        sql+="CREATE USER $(sql_str "$MYSQL_USER")@'%' IDENTIFIED BY $(sql_str "$MYSQL_PASSWORD");"
        if [[ -n "${MYSQL_DATABASE:-}" ]]; then
            sql+="GRANT ALL ON $(sql_ident "$MYSQL_DATABASE").* TO $(sql_str "$MYSQL_USER")@'%';"
        fi
    fi
    mariadb --protocol=socket --socket="$socket" -uroot -e "$sql FLUSH PRIVILEGES;"
    local f
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh) log "running $f"; if [[ -x "$f" ]]; then "$f"; else
                # shellcheck source=/dev/null
                . "$f"
            fi ;;
            *.sql) log "running $f"; root_sql ${MYSQL_DATABASE:+"$MYSQL_DATABASE"} <"$f" ;;
            *) [[ -e "$f" ]] && log "ignoring $f" ;;
        esac
    done
    root_sql -e "SHUTDOWN;"
    wait "$pid"
    log "initialisation done"
}

if [[ "${1:-}" == -* ]]; then
    set -- mariadbd "$@"
fi
if [[ "${1:-}" == mariadbd || "${1:-}" == mysqld ]]; then
    install -d -o mysql -g mysql /run/mysqld "$datadir"
    chown mysql:mysql "$datadir"
    [[ -d "$datadir/mysql" ]] || initialise
    shift
    exec mariadbd --user=mysql --datadir="$datadir" --socket="$socket" \
        --bind-address=0.0.0.0 --port=3306 --skip-name-resolve "$@"
fi
exec "$@"
