#!/usr/bin/env bash
# Build a stand-in Postgres image from Debian's packages, for machines that cannot pull the official one
# (air-gapped hosts, this project's CI). Usage: scripts/build-postgres-image.sh TAG
#
# debootstrap a minimal bookworm with postgresql-15, add an entrypoint that honours the official image's
# POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB and passes extra arguments to the server
# (`-c max_connections=N`), then `docker import` the tree as TAG. Does nothing if TAG already exists.
# `docker import` cannot set STOPSIGNAL: stop containers with SIGINT (fast shutdown), as the official image
# does (`docker run --stop-signal SIGINT`; the harness does so itself).
# Needs root, debootstrap, a running Docker engine and Debian's package mirror (MIRROR, default deb.debian.org).
set -euo pipefail

TAG="${1:-}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm

die() { echo "build-postgres-image: $*" >&2; exit 1; }

[ -n "$TAG" ] && [ "$#" -eq 1 ] || { echo "usage: $0 TAG" >&2; exit 2; }
command -v docker >/dev/null 2>&1 || die "the docker command is not installed"
docker info >/dev/null 2>&1 || die "no Docker engine answers (is dockerd running?)"
if docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "build-postgres-image: $TAG already exists; nothing to do"
    exit 0
fi
[ "$(id -u)" = 0 ] || die "debootstrap needs root"
command -v debootstrap >/dev/null 2>&1 || die "debootstrap is not installed (apt-get install debootstrap)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/pg-image-XXXXXX")"
ROOT="$WORK/root"
cleanup() {
    # debootstrap mounts /proc and /sys inside the tree; an interrupted run can leave them mounted
    if [ -d "$ROOT" ]; then
        awk -v root="$ROOT" 'index($2, root) == 1 { print $2 }' /proc/mounts | sort -r | while read -r mnt; do
            umount -l "$mnt" 2>/dev/null || true
        done
    fi
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

started=$(date +%s)
echo "build-postgres-image: debootstrap $SUITE with postgresql-15 from $MIRROR"
debootstrap --variant=minbase --include=postgresql-15 "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -n 20 "$WORK/debootstrap.log" >&2; die "debootstrap failed (last lines above)"; }

# the package's own cluster and the download caches are not needed in the image
rm -rf "$ROOT/var/lib/postgresql/15" "$ROOT/etc/postgresql/15" "$ROOT/var/cache/apt/archives/"*.deb \
    "$ROOT/var/lib/apt/lists/"*

cat >"$ROOT/entrypoint" <<'ENTRYPOINT'
#!/bin/sh
# The official postgres image's contract: POSTGRES_USER (default postgres) is the superuser with
# POSTGRES_PASSWORD (required), POSTGRES_DB (default POSTGRES_USER) exists, password auth over TCP;
# arguments after an optional leading "postgres" go to the server (-c max_connections=N).
set -eu
BIN=/usr/lib/postgresql/15/bin
PGDATA="${PGDATA:-/var/lib/postgresql/data}"
POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
if [ "${1:-}" = postgres ]; then shift; fi
if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "entrypoint: POSTGRES_PASSWORD must be set" >&2
    exit 1
fi
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

mkdir -p /run/postgresql
chown postgres:postgres /run/postgresql
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    chown postgres "$pwfile"
    as_postgres "$BIN/initdb" -D "$PGDATA" -E UTF8 --locale=C.UTF-8 -U "$POSTGRES_USER" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    if [ "$POSTGRES_DB" != postgres ]; then
        ident="$(printf '%s' "$POSTGRES_DB" | sed 's/"/""/g')"
        echo "CREATE DATABASE \"$ident\"" | as_postgres "$BIN/postgres" --single -D "$PGDATA" postgres >/dev/null
    fi
    echo "entrypoint: initialized $PGDATA (user $POSTGRES_USER, database $POSTGRES_DB)"
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups \
    "$BIN/postgres" -D "$PGDATA" -c listen_addresses='*' "$@"
ENTRYPOINT
chmod 755 "$ROOT/entrypoint"

echo "build-postgres-image: docker import as $TAG"
tar -C "$ROOT" --numeric-owner -c . | docker import \
    -c 'ENTRYPOINT ["/entrypoint"]' -c 'CMD ["postgres"]' -c 'EXPOSE 5432' \
    -c 'ENV PGDATA=/var/lib/postgresql/data LANG=C.UTF-8' - "$TAG" >/dev/null
echo "build-postgres-image: built $TAG in $(( $(date +%s) - started )) s ($(docker image inspect -f '{{.Size}}' "$TAG" \
    | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
