#!/usr/bin/env bash
# Install (if missing) and start a private PostgreSQL 15 + PostGIS 3 for the deconfliction
# benchmark, on 127.0.0.1 and a free port. Idempotent: a second run reuses the running server.
#
#   scripts/setup-postgis.sh            # prints PORT=<port> on its last line
#   PGBENCH_DIR=/tmp/pg scripts/setup-postgis.sh
#
# Needs root for apt-get (the benchmark's own setup); the cluster runs as the postgres user.
set -euo pipefail

PG_VERSION=15
PG_BIN=/usr/lib/postgresql/${PG_VERSION}/bin
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA_PARENT="${PGBENCH_DIR:-${ROOT}/.bench/postgis}"
DATA="${DATA_PARENT}/data"
DB=hotline_bench

log() { echo "setup-postgis: $*" >&2; }

# 1. Packages: Debian's PostgreSQL 15 and PostGIS 3 (btree_gist ships with postgresql-15).
if [ ! -f "/usr/share/postgresql/${PG_VERSION}/extension/postgis.control" ] \
   || [ ! -x "${PG_BIN}/initdb" ]; then
  log "installing postgresql-${PG_VERSION} and postgresql-${PG_VERSION}-postgis-3"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends \
    "postgresql-${PG_VERSION}" "postgresql-${PG_VERSION}-postgis-3" postgresql-contrib >/dev/null
fi

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# 2. A cluster of our own, owned by postgres.
mkdir -p "${DATA_PARENT}"
if [ "$(id -u)" = 0 ]; then chown postgres: "${DATA_PARENT}"; fi
if [ ! -f "${DATA}/PG_VERSION" ]; then
  log "initdb into ${DATA}"
  as_pg "${PG_BIN}/initdb" -D "${DATA}" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
fi

# 3. Start it on a free port unless it is already running.
if as_pg "${PG_BIN}/pg_ctl" -D "${DATA}" status >/dev/null 2>&1; then
  PORT="$(cat "${DATA_PARENT}/port")"
else
  PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  echo "${PORT}" > "${DATA_PARENT}/port"
  log "starting on 127.0.0.1:${PORT}"
  as_pg "${PG_BIN}/pg_ctl" -D "${DATA}" -l "${DATA_PARENT}/server.log" -w start \
    -o "-h 127.0.0.1 -p ${PORT} -k /tmp -c shared_buffers=512MB -c work_mem=64MB \
        -c maintenance_work_mem=512MB -c fsync=off -c synchronous_commit=off \
        -c max_parallel_workers_per_gather=2 -c jit=off" >/dev/null
fi

# 4. The database and its extensions.
PSQL=(psql -h 127.0.0.1 -p "${PORT}" -U postgres -v ON_ERROR_STOP=1 -qAt)
if [ "$("${PSQL[@]}" -d postgres -c "select 1 from pg_database where datname='${DB}'")" != 1 ]; then
  "${PSQL[@]}" -d postgres -c "create database ${DB}"
fi
"${PSQL[@]}" -d "${DB}" -c "create extension if not exists postgis; create extension if not exists btree_gist"
log "ready: postgresql://postgres@127.0.0.1:${PORT}/${DB}"
echo "PORT=${PORT}"
