#!/usr/bin/env bash
# Start Debian's PostgreSQL for the ledger tests and print the URL they use (stdout, last line).
set -euo pipefail
ROLE=soundtrail
DB=soundtrail_test
as_postgres() { if [ "$(id -u)" -eq 0 ]; then su postgres -c "$1"; else sudo -u postgres bash -c "$1"; fi; }

version=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h | grep -q .; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO pg_createcluster "$version" main >/dev/null
fi
cluster=$(pg_lsclusters -h | head -1)
read -r cversion cname port status _ <<<"$cluster"
if [ "$status" != "online" ]; then
    pg_ctlcluster "$cversion" "$cname" start 2>/dev/null || sudo pg_ctlcluster "$cversion" "$cname" start
fi
for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p "$port" && break; sleep 1; done
as_postgres "psql -p $port -tAc \"SELECT 1 FROM pg_roles WHERE rolname='$ROLE'\" | grep -q 1 || psql -p $port -qc \"CREATE ROLE $ROLE LOGIN SUPERUSER PASSWORD '$ROLE'\""
as_postgres "psql -p $port -tAc \"SELECT 1 FROM pg_database WHERE datname='$DB'\" | grep -q 1 || createdb -p $port -O $ROLE $DB"
echo "postgresql+psycopg://$ROLE:$ROLE@127.0.0.1:$port/$DB"
