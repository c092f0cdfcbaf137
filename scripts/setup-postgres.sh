#!/usr/bin/env bash
# Install (if missing) and start a private PostgreSQL 15 for the test suite and the store
# benchmarks, on 127.0.0.1 and a free port. Idempotent: a second run reuses the running server.
#
#   scripts/setup-postgres.sh           # prints the server's URL on its last line:
#                                       # postgresql://postgres@127.0.0.1:PORT/postgres
#   HOTLINE_PG_DIR=/tmp/pg scripts/setup-postgres.sh
#   scripts/setup-postgres.sh stop      # stops the server this script started
#
# Needs root for apt-get on a clean machine; the cluster runs as the postgres user, in a folder
# that user owns (default .pg/durable in the project). Durability is PostgreSQL's default (fsync
# on; the store sets synchronous_commit=on itself): the store benchmarks measure what an operator
# would run.
#
# HOTLINE_PG_UNSAFE_NO_FSYNC=1 starts the cluster with fsync=off: for the test suite's disposable
# cluster only (make test-pg uses .pg/tests), where each test makes fresh databases and
# CREATE/DROP DATABASE would otherwise cost seconds each in flushes. A crash of the machine can
# corrupt such a cluster; nothing in it is meant to survive one.
set -euo pipefail

PG_VERSION=15
PG_BIN=/usr/lib/postgresql/${PG_VERSION}/bin
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA_PARENT="${HOTLINE_PG_DIR:-${ROOT}/.pg/durable}"
# An absolute path: the walk up to / below would never end at a relative one (".pg/tests").
mkdir -p "${DATA_PARENT}"
DATA_PARENT="$(cd "${DATA_PARENT}" && pwd)"
FSYNC=on
if [ "${HOTLINE_PG_UNSAFE_NO_FSYNC:-}" = 1 ]; then FSYNC=off; fi
DATA="${DATA_PARENT}/data"

log() { echo "setup-postgres: $*" >&2; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

if [ "${1:-}" = stop ]; then
  if [ -f "${DATA}/PG_VERSION" ]; then
    as_pg "${PG_BIN}/pg_ctl" -D "${DATA}" -m fast -w stop >/dev/null 2>&1 || true
  fi
  exit 0
fi

# 1. Packages: Debian's PostgreSQL 15 (server and client tools: psql, pg_dump, pg_restore).
if [ ! -x "${PG_BIN}/initdb" ] || ! command -v pg_dump >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    log "postgresql-${PG_VERSION} is missing: run this script as root once, or install it"
    exit 1
  fi
  log "installing postgresql-${PG_VERSION}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "postgresql-${PG_VERSION}" \
    "postgresql-client-${PG_VERSION}" >/dev/null
fi

# 2. A cluster of our own, owned by postgres (the data folder and every parent it must reach).
mkdir -p "${DATA_PARENT}"
if [ "$(id -u)" = 0 ]; then
  chown postgres: "${DATA_PARENT}"
  # The postgres user must be able to traverse to the folder (a worktree under /root, say).
  dir="${DATA_PARENT}"
  while [ "${dir}" != / ]; do
    dir="$(dirname "${dir}")"
    if ! runuser -u postgres -- test -x "${dir}"; then chmod o+x "${dir}"; fi
  done
fi
if [ ! -f "${DATA}/PG_VERSION" ]; then
  log "initdb into ${DATA}"
  as_pg "${PG_BIN}/initdb" -D "${DATA}" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
fi

# 3. Start it on a free port unless it is already running. Each test gets fresh databases and
#    each node process holds a few connections: allow many.
if as_pg "${PG_BIN}/pg_ctl" -D "${DATA}" status >/dev/null 2>&1; then
  PORT="$(cat "${DATA_PARENT}/port")"
else
  PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  echo "${PORT}" > "${DATA_PARENT}/port"
  log "starting on 127.0.0.1:${PORT} (fsync=${FSYNC})"
  as_pg "${PG_BIN}/pg_ctl" -D "${DATA}" -l "${DATA_PARENT}/server.log" -w start \
    -o "-h 127.0.0.1 -p ${PORT} -k /tmp -c max_connections=400 -c shared_buffers=128MB \
        -c jit=off -c fsync=${FSYNC}" >/dev/null
fi
log "ready"
echo "postgresql://postgres@127.0.0.1:${PORT}/postgres"
