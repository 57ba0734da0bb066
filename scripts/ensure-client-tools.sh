#!/usr/bin/env bash
# Installs the real clients and migration tools the client tests drive through the proxy (issue 13),
# from Debian's packages: psycopg 3 (python3-psycopg, for /usr/bin/python3), ruby-pg, PHP's pgsql,
# the PostgreSQL JDBC driver (and a Java runtime if there is none), sqitch with DBD::Pg. knex comes
# from npm with the other dev dependencies. Idempotent: it only checks when everything is there.
#
# ensure-services.sh starts this in the background (the install takes a minute or more on a fresh
# machine: it overlaps the unit tests); the client tests run it again in the foreground, which waits
# for the background run through the lock and installs whatever is still missing.
# Log: /tmp/sluice-client-tools.log. Exit 1 when a tool is still missing afterwards.
set -uo pipefail

LOCK=${SLUICE_CLIENT_TOOLS_LOCK:-/tmp/sluice-client-tools.lock}
LOG=${SLUICE_CLIENT_TOOLS_LOG:-/tmp/sluice-client-tools.log}
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
log() { echo "[ensure-client-tools] $(date -u +%H:%M:%S) $*" >&2; }

missing() {
  local m=()
  /usr/bin/python3 -c "import psycopg" >/dev/null 2>&1 || m+=(python3-psycopg)
  ruby -e "require 'pg'" >/dev/null 2>&1 || m+=(ruby-pg)
  command -v php >/dev/null 2>&1 || m+=(php-cli)
  php -r 'exit(function_exists("pg_connect") ? 0 : 1);' >/dev/null 2>&1 || m+=(php-pgsql)
  command -v java >/dev/null 2>&1 || m+=(default-jre-headless)
  [ -f /usr/share/java/postgresql.jar ] || m+=(libpostgresql-jdbc-java)
  command -v sqitch >/dev/null 2>&1 || m+=(sqitch)
  perl -MDBD::Pg -e 1 >/dev/null 2>&1 || m+=(libdbd-pg-perl)
  echo "${m[@]:-}"
}

exec 9>"$LOCK"
# another run (the background one) installs: wait for it, then check again
flock 9
need=$(missing)
if [ -z "$need" ]; then
  exit 0
fi
start=$(date +%s)
log "installing: $need"
export DEBIAN_FRONTEND=noninteractive
{
  # apt's own lock may be held by another installer for a while: wait for it rather than fail
  $SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq &&
  # shellcheck disable=SC2086
  $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends $need
} >>"$LOG" 2>&1
left=$(missing)
log "done in $(( $(date +%s) - start )) s${left:+; still missing: $left (see $LOG)}"
[ -z "$left" ]
