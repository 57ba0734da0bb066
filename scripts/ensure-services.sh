#!/usr/bin/env bash
# Makes sure what the tests and the demo need is installed and running: PostgreSQL on 127.0.0.1:5432
# (trust auth for local connections), NATS with JetStream on 127.0.0.1:4222, psql/pgbench, pgbouncer,
# openssl, and headless Chromium with a font for the console's browser tests; in the background,
# the client tests' drivers and migration tools (ensure-client-tools.sh). Idempotent: on a
# machine that already runs them it only checks. Debian packages only.
set -euo pipefail

log() { echo "[ensure-services] $*" >&2; }
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

need_pkgs=()
command -v psql >/dev/null || need_pkgs+=(postgresql-client)
[ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null || need_pkgs+=(pgbouncer)
command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || need_pkgs+=(nats-server)
command -v openssl >/dev/null || need_pkgs+=(openssl)
# the console's end-to-end tests drive Debian's Chromium with playwright-core (no browser download)
command -v chromium >/dev/null || need_pkgs+=(chromium)
[ -d /usr/share/fonts/truetype/dejavu ] || need_pkgs+=(fonts-dejavu-core)
pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
# the server package also brings initdb/pg_ctl (private clusters in tests) and the real pgbench
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1; then
  need_pkgs+=(postgresql)
fi

if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# --- PostgreSQL ---------------------------------------------------------------------------
if ! pg_up; then
  log "starting PostgreSQL"
  ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$ver" ]; then
    ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
    $SUDO pg_createcluster "$ver" main >/dev/null
  fi
  hba=/etc/postgresql/$ver/main/pg_hba.conf
  # the tests connect as postgres over TCP without a password (trust on loopback only)
  if ! grep -q "sluice-ci" "$hba"; then
    $SUDO sed -i '1i host all all 127.0.0.1/32 trust # sluice-ci\nhost all all ::1/128 trust # sluice-ci\nlocal all all trust # sluice-ci' "$hba"
  fi
  $SUDO sed -i "s/^#\?max_connections.*/max_connections = 500/" /etc/postgresql/$ver/main/postgresql.conf
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main start || $SUDO pg_ctlcluster "$ver" main start
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  pg_up || { log "PostgreSQL did not come up"; exit 1; }
fi

# the tests connect as `postgres` over TCP without a password: make loopback trust if it is not
# (a freshly installed Debian cluster asks for scram-sha-256 on 127.0.0.1)
if ! PGCONNECT_TIMEOUT=5 psql -w -X -q -h 127.0.0.1 -p 5432 -U postgres -d postgres -c "select 1" >/dev/null 2>&1; then
  log "making loopback connections trusted for the tests"
  for hba in /etc/postgresql/*/main/pg_hba.conf; do
    grep -q "sluice-ci" "$hba" || $SUDO sed -i '1i host all all 127.0.0.1/32 trust # sluice-ci\nhost all all ::1/128 trust # sluice-ci\nlocal all all trust # sluice-ci' "$hba"
  done
  ver=$(ls /etc/postgresql | sort -V | tail -1)
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main reload 2>/dev/null || $SUDO pg_ctlcluster "$ver" main reload
  sleep 1
  PGCONNECT_TIMEOUT=5 psql -w -X -q -h 127.0.0.1 -p 5432 -U postgres -d postgres -c "select 1" >/dev/null \
    || { log "cannot connect to PostgreSQL as postgres on 127.0.0.1:5432 without a password"; exit 1; }
fi

# --- NATS with JetStream ------------------------------------------------------------------
nats_up() { (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; }
if ! nats_up; then
  log "starting nats-server with JetStream"
  NATS_BIN=$(command -v nats-server || echo /usr/sbin/nats-server)
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec "$NATS_BIN" -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  for _ in $(seq 1 30); do nats_up && break; sleep 0.5; done
  nats_up || { log "nats-server did not come up"; exit 1; }
fi
log "PostgreSQL and NATS are up"

# --- the real clients and migration tools of the client tests -------------------------------
# In the background: on a fresh machine their install takes a minute or more, which overlaps the
# unit tests; those tests run the same script in the foreground and wait for it (a lock).
if [ -z "${SLUICE_NO_CLIENT_TOOLS:-}" ]; then
  setsid bash "$(dirname "$0")/ensure-client-tools.sh" >>"${SLUICE_CLIENT_TOOLS_LOG:-/tmp/sluice-client-tools.log}" 2>&1 </dev/null &
fi
