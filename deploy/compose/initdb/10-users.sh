#!/bin/bash
# First start of the mysql container only (empty data volume): create the migrator and the app users.
# The migrator owns the schema of $MYSQL_DATABASE and may pass on SELECT/INSERT; the app user gets no
# privilege here: `python -m db.migrate` grants it SELECT, INSERT on its tables.
set -euo pipefail

sql_str() { local v=${1//\\/\\\\}; printf "'%s'" "${v//\'/\\\'}"; }

: "${MYSQL_DATABASE:?}" "${DRYBEANS_MIGRATOR_DB_USER:?}" "${DRYBEANS_MIGRATOR_DB_PASSWORD:?}"
: "${DRYBEANS_APP_DB_USER:?}" "${DRYBEANS_APP_DB_PASSWORD:?}"
db="\`${MYSQL_DATABASE//\`/\`\`}\`"
migrator="$(sql_str "$DRYBEANS_MIGRATOR_DB_USER")@'%'"
app="$(sql_str "$DRYBEANS_APP_DB_USER")@'%'"

mysql --protocol=socket -uroot -p"$MYSQL_ROOT_PASSWORD" <<SQL
CREATE USER IF NOT EXISTS $migrator IDENTIFIED BY $(sql_str "$DRYBEANS_MIGRATOR_DB_PASSWORD");
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX, DROP, REFERENCES ON $db.* TO $migrator WITH GRANT OPTION;
CREATE USER IF NOT EXISTS $app IDENTIFIED BY $(sql_str "$DRYBEANS_APP_DB_PASSWORD");
FLUSH PRIVILEGES;
SQL
echo "10-users.sh: created $DRYBEANS_MIGRATOR_DB_USER (schema owner of $MYSQL_DATABASE) and $DRYBEANS_APP_DB_USER"
