#!/usr/bin/env bash
# Makes sure PostgreSQL (with the pgvector extension available) and Redis are running locally.
# Idempotent: does nothing for a service that already answers. Used by `scripts/dev` and `scripts/test`.
set -euo pipefail

PGHOST_ADDR="${PGHOST_ADDR:-127.0.0.1}"
PGPORT="${PGPORT:-5432}"
REDIS_PORT="${REDIS_PORT:-6379}"

log() { printf '[services] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root for: $*"; return 1; fi
}

pg_up() { pg_isready -q -h "$PGHOST_ADDR" -p "$PGPORT" 2>/dev/null; }

start_postgres() {
  if pg_up; then return 0; fi
  log "PostgreSQL is not answering on $PGHOST_ADDR:$PGPORT; starting it"
  if ! command -v pg_ctlcluster >/dev/null; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  local ver
  ver=$(ls /etc/postgresql | sort -V | tail -n 1)
  as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  for _ in $(seq 1 30); do pg_up && return 0; sleep 1; done
  log "PostgreSQL did not come up"; return 1
}

redis_up() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; }

start_redis() {
  if redis_up; then return 0; fi
  log "Redis is not answering on 127.0.0.1:$REDIS_PORT; starting it"
  if ! command -v redis-server >/dev/null; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
  mkdir -p /tmp/corredor-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir /tmp/corredor-redis --logfile /tmp/corredor-redis/redis.log
  for _ in $(seq 1 30); do redis_up && return 0; sleep 0.5; done
  log "Redis did not come up"; return 1
}

vector_available() {
  [ "$(psql -h "$PGHOST_ADDR" -p "$PGPORT" -U postgres -d postgres -tAc \
      "select count(*) from pg_available_extensions where name = 'vector'" 2>/dev/null)" = "1" ]
}

# pgvector is not packaged for this Debian release's PostgreSQL; build Debian's source package of the
# next release. The archive address is taken from the machine's own apt sources, never hard-coded.
install_pgvector() {
  if vector_available; then return 0; fi
  log "pgvector is missing; building it from Debian's source package"
  local pgver uri keyring suite=trixie
  pgver=$(pg_config --version 2>/dev/null | sed -E 's/^PostgreSQL ([0-9]+).*/\1/' || true)
  [ -n "$pgver" ] || pgver=$(ls /etc/postgresql | sort -V | tail -n 1)
  uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n 1 || true)
  if [ -z "$uri" ]; then
    uri=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | grep -v security | awk '{print $2}' | head -n 1 || true)
  fi
  if [ -z "$uri" ]; then log "no apt source to derive the archive address from"; return 1; fi
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  as_root tee /etc/apt/sources.list.d/corredor-pgvector-src.sources >/dev/null <<SRC
Types: deb-src
URIs: $uri
Suites: $suite
Components: main
Signed-By: $keyring
SRC
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    "postgresql-server-dev-$pgver" dpkg-dev build-essential >/dev/null
  local work
  work=$(mktemp -d)
  (cd "$work" && apt-get source -qq pgvector >/dev/null 2>&1)
  local src
  src=$(find "$work" -maxdepth 1 -mindepth 1 -type d -name 'pgvector-*' | head -n 1)
  if [ -z "$src" ]; then log "could not fetch the pgvector source package"; return 1; fi
  as_root make -s -C "$src" PG_CONFIG="/usr/lib/postgresql/$pgver/bin/pg_config" OPTFLAGS="" >/dev/null
  as_root make -s -C "$src" PG_CONFIG="/usr/lib/postgresql/$pgver/bin/pg_config" install >/dev/null
  rm -rf "$work"
  vector_available || { log "pgvector built but PostgreSQL does not list it"; return 1; }
  log "pgvector installed"
}

start_postgres
start_redis
install_pgvector
