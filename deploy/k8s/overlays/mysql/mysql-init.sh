# shellcheck shell=bash
# Creates the drybeans database users on MySQL's first boot.
#
# The official mysql image sources this file (it is not executable) from
# /docker-entrypoint-initdb.d after creating $MYSQL_DATABASE, while its temporary server
# runs, and only when the data directory is empty. `docker_process_sql` is the image's
# helper that runs SQL from stdin as root over the local socket.
#
# - the application user gets no privilege here: the migration Job grants it SELECT, INSERT
#   on its table once the table exists;
# - the migrator user owns the application database (ALL ... WITH GRANT OPTION), so that it
#   can migrate the schema and grant the application user.
#
# Environment (set on the MySQL container from the Secret drybeans-db and the config):
# MYSQL_DATABASE, DRYBEANS_APP_DB_USER, DRYBEANS_APP_DB_PASSWORD,
# DRYBEANS_MIGRATOR_DB_USER, DRYBEANS_MIGRATOR_DB_PASSWORD.

# Print $1 as an SQL string literal (backslashes and single quotes escaped).
drybeans_sql_string() {
    local value=${1//\\/\\\\}
    printf "'%s'" "${value//\'/\'\'}"
}

# Fail unless $1 is a plain MySQL identifier, named $2 in the error.
drybeans_require_identifier() {
    if [[ ! $1 =~ ^[A-Za-z0-9_]{1,32}$ ]]; then
        echo "mysql-init.sh: $2 must be 1-32 letters, digits or underscores, got '$1'" >&2
        return 1
    fi
}

drybeans_create_users() {
    local database=${MYSQL_DATABASE:?mysql-init.sh: set MYSQL_DATABASE}
    local app_user=${DRYBEANS_APP_DB_USER:?mysql-init.sh: set DRYBEANS_APP_DB_USER}
    local app_password=${DRYBEANS_APP_DB_PASSWORD:?mysql-init.sh: set DRYBEANS_APP_DB_PASSWORD}
    local migrator_user=${DRYBEANS_MIGRATOR_DB_USER:?mysql-init.sh: set DRYBEANS_MIGRATOR_DB_USER}
    local migrator_password=${DRYBEANS_MIGRATOR_DB_PASSWORD:?mysql-init.sh: set DRYBEANS_MIGRATOR_DB_PASSWORD}
    drybeans_require_identifier "$database" MYSQL_DATABASE || return 1
    drybeans_require_identifier "$app_user" DRYBEANS_APP_DB_USER || return 1
    drybeans_require_identifier "$migrator_user" DRYBEANS_MIGRATOR_DB_USER || return 1
    # In a GRANT, `_` in a database name is a wildcard: escape it to grant this database only.
    local database_pattern=${database//_/\\_}

    docker_process_sql --database=mysql <<EOSQL
CREATE USER IF NOT EXISTS '${app_user}'@'%' IDENTIFIED BY $(drybeans_sql_string "$app_password");
CREATE USER IF NOT EXISTS '${migrator_user}'@'%' IDENTIFIED BY $(drybeans_sql_string "$migrator_password");
GRANT ALL PRIVILEGES ON \`${database_pattern}\`.* TO '${migrator_user}'@'%' WITH GRANT OPTION;
EOSQL
}

drybeans_create_users
unset -f drybeans_sql_string drybeans_require_identifier drybeans_create_users
