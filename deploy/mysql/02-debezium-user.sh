#!/bin/bash
# Create the account Debezium's MySQL connector logs in with (replication + snapshot rights).
# The mysql image *sources* this file at first start (it is not executable on purpose), after
# 01-core_business.sql, so docker_process_sql from its entrypoint is available here.
# DEBEZIUM_DB_USER / DEBEZIUM_DB_PASSWORD come from docker-compose.yml. No "set -u" here:
# options set in a sourced file would leak into the image's entrypoint.

dbz_user="${DEBEZIUM_DB_USER:-debezium}"
dbz_password="${DEBEZIUM_DB_PASSWORD:-dbz}"
case "$dbz_user$dbz_password" in
    *"'"* | *'\'* | *'`'*)
        echo "02-debezium-user.sh: quotes and backslashes are not allowed in DEBEZIUM_DB_*" >&2
        exit 1
        ;;
esac

docker_process_sql --database=mysql <<-EOSQL
	CREATE USER IF NOT EXISTS '${dbz_user}'@'%' IDENTIFIED BY '${dbz_password}';
	GRANT SELECT, RELOAD, SHOW DATABASES, REPLICATION SLAVE, REPLICATION CLIENT, LOCK TABLES
	    ON *.* TO '${dbz_user}'@'%';
	FLUSH PRIVILEGES;
EOSQL
