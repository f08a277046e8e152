#!/bin/sh
# tools/devstack.d/temporal-schema.sh - create and update Temporal's PostgreSQL schema with
# Temporal's own SQL schema tool (temporal-sql-tool, go.temporal.io/server/cmd/tools/sql).
#
#   temporal-schema.sh TOOL SCHEMA_DIR HOST PORT USER DATABASE VISIBILITY_DATABASE
#
#   TOOL        the temporal-sql-tool binary (the dev stack's is built from the Go module proxy
#               at the server's version; the temporalio/admin-tools image has it on PATH)
#   SCHEMA_DIR  the server's schema/ directory: the server module's schema/ in the Go module
#               cache for the dev stack, /etc/temporal/schema in the admin-tools image
#   HOST PORT USER  the PostgreSQL server and the role that owns Temporal's databases (it needs
#               CREATEDB); the password is read from SQL_PASSWORD in the environment, as the tool
#               itself does, so that it is not on a command line
#   DATABASE VISIBILITY_DATABASE  the main (execution) store's and the visibility store's names
#
# For each of the two stores, in this order: `create-database` (a database that exists already is
# fine), `setup-schema -v 0.0` (the version tables; a database that is past 0.0 is left alone),
# `update-schema -d SCHEMA_DIR/postgresql/v12/{temporal,visibility}/versioned` (every versioned
# step up to the newest the server ships; nothing when it is up to date). Running it again is a
# no-op, so tools/devstack runs it on every start of the server and docker-compose.yml's
# temporal-schema service runs it before the server starts. Plugin: postgres12 (the server's
# PostgreSQL 12+ plugin, lib/pq; postgres12_pgx is the same schema through pgx).
#
# POSIX sh: the admin-tools image is not guaranteed to have bash.
set -eu

if [ "$#" -ne 7 ]; then
    echo "usage: temporal-schema.sh TOOL SCHEMA_DIR HOST PORT USER DATABASE VISIBILITY_DATABASE" >&2
    exit 2
fi
tool=$1
schema_dir=$2
host=$3
port=$4
user=$5
database=$6
visibility_database=$7
plugin=postgres12

say() { printf 'temporal-schema: %s\n' "$*"; }
die() {
    printf 'temporal-schema: error: %s\n' "$*" >&2
    exit 1
}

[ -x "$tool" ] || command -v "$tool" >/dev/null 2>&1 || die "no temporal-sql-tool at '$tool'"
for store in temporal visibility; do
    [ -d "$schema_dir/postgresql/v12/$store/versioned" ] ||
        die "$schema_dir/postgresql/v12/$store/versioned does not exist (SCHEMA_DIR must be the server's schema/ directory)"
done

sql_tool() {
    "$tool" --plugin "$plugin" --endpoint "$host" --port "$port" --user "$user" "$@"
}

# setup_store DATABASE STORE: the three steps for one database.
setup_store() {
    db=$1
    store=$2
    if ! out=$(sql_tool --database "$db" create-database 2>&1); then
        case $out in
            *"already exists"*) say "$db: database exists" ;;
            *)
                printf '%s\n' "$out" >&2
                die "$db: create-database failed"
                ;;
        esac
    else
        say "$db: database created"
    fi
    sql_tool --database "$db" setup-schema -v 0.0 ||
        die "$db: setup-schema -v 0.0 failed"
    sql_tool --database "$db" update-schema -d "$schema_dir/postgresql/v12/$store/versioned" ||
        die "$db: update-schema -d $schema_dir/postgresql/v12/$store/versioned failed"
    say "$db: schema up to date ($store, $schema_dir/postgresql/v12/$store/versioned)"
}

setup_store "$database" temporal
setup_store "$visibility_database" visibility
