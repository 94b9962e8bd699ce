#!/usr/bin/env bash
# Start the local servers the tests use (PostgreSQL 127.0.0.1:5432, MariaDB 127.0.0.1:3306) if they are down.
set -euo pipefail

wait_for() {  # name, command
  for _ in $(seq 1 60); do
    if eval "$2" >/dev/null 2>&1; then echo "$1 is up"; return 0; fi
    sleep 1
  done
  echo "error: $1 did not come up" >&2
  return 1
}

if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  if [ -d /etc/postgresql ]; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  else
    echo "error: PostgreSQL is not installed (the tests need it at 127.0.0.1:5432)" >&2
    exit 1
  fi
fi
wait_for PostgreSQL "pg_isready -h 127.0.0.1 -p 5432 -q"
psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE test"

if ! mysqladmin -h 127.0.0.1 -u root ping >/dev/null 2>&1; then
  if [ -x /usr/sbin/mariadbd ]; then
    echo "starting MariaDB"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  else
    echo "error: MariaDB is not installed (the tests need it at 127.0.0.1:3306)" >&2
    exit 1
  fi
fi
wait_for MariaDB "mysqladmin -h 127.0.0.1 -u root ping"
mysql -h 127.0.0.1 -u root -e "CREATE DATABASE IF NOT EXISTS test" >/dev/null
