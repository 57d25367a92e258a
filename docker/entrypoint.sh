#!/bin/sh
# SignVault entrypoint: bring the database schema to head, then run the command.
#
#   docker/entrypoint.sh signvault serve --host 0.0.0.0 --port 8000
#
# The database may still be starting (a compose stack, a PostgreSQL failover),
# so `signvault migrate` is retried: SIGNVAULT_MIGRATE_RETRIES attempts
# (default 30), SIGNVAULT_MIGRATE_DELAY seconds apart (default 2). The command
# runs only once the migration has succeeded; otherwise this exits non-zero.
# SIGNVAULT_SKIP_MIGRATE=1 runs the command without migrating (a debug shell).
# Works the same on a host, with `signvault` on PATH.
set -eu

log() {
    printf 'entrypoint: %s\n' "$*" >&2
}

is_uint() {
    case $1 in
        '' | *[!0-9]*) return 1 ;;
        *) return 0 ;;
    esac
}

if [ "$#" -eq 0 ]; then
    log "usage: $0 COMMAND [ARG...]   (e.g. signvault serve)"
    exit 64
fi

retries=${SIGNVAULT_MIGRATE_RETRIES:-30}
delay=${SIGNVAULT_MIGRATE_DELAY:-2}
if ! is_uint "$retries" || [ "$retries" -lt 1 ]; then
    log "SIGNVAULT_MIGRATE_RETRIES must be a whole number >= 1, not '$retries'"
    exit 64
fi
if ! is_uint "$delay"; then
    log "SIGNVAULT_MIGRATE_DELAY must be a whole number of seconds, not '$delay'"
    exit 64
fi

if [ "${SIGNVAULT_SKIP_MIGRATE:-0}" = 1 ]; then
    log "SIGNVAULT_SKIP_MIGRATE=1: not migrating the database"
else
    if ! command -v signvault >/dev/null 2>&1; then
        log "the 'signvault' command is not on PATH ($PATH)"
        exit 127
    fi
    attempt=1
    until signvault migrate; do
        if [ "$attempt" -ge "$retries" ]; then
            log "database migration failed after $attempt attempt(s); not running: $*"
            exit 1
        fi
        log "migration attempt $attempt/$retries failed (database not ready?); retrying in ${delay}s"
        attempt=$((attempt + 1))
        sleep "$delay"
    done
fi

exec "$@"
