#!/usr/bin/env bash
# testenv.sh runs a command (the test suite) with the local MariaDB and
# PostgreSQL up and throw-away test databases created, exporting their DSNs
# as PICOMDM_TEST_MYSQL_DSN and PICOMDM_TEST_PGSQL_DSN. Where a database
# server is not installed it says so and leaves its DSN unset: the SQL suites
# then skip locally (under CI=true they fail instead).
set -u

log() { printf 'testenv: %s\n' "$*" >&2; }

mysql_up() { mysqladmin --protocol=tcp -h127.0.0.1 -uroot ping >/dev/null 2>&1; }
pgsql_up() { pg_isready -q -h 127.0.0.1 -p 5432 >/dev/null 2>&1; }

wait_for() { # wait_for NAME CHECK: up to 30 s
  for _ in $(seq 1 60); do "$2" && return 0; sleep 0.5; done
  log "$1 did not come up"; return 1
}

if [ -x /usr/sbin/mariadbd ] || command -v mysqld >/dev/null 2>&1; then
  if ! mysql_up; then
    log "starting MariaDB"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd >/dev/null 2>&1 || true
    wait_for MariaDB mysql_up
  fi
  if mysql_up; then
    mysql --protocol=tcp -h127.0.0.1 -uroot -e 'CREATE DATABASE IF NOT EXISTS picomdm_test' &&
      export PICOMDM_TEST_MYSQL_DSN="${PICOMDM_TEST_MYSQL_DSN:-root@tcp(127.0.0.1:3306)/picomdm_test?parseTime=true}"
  fi
else
  log "MariaDB/MySQL not installed: MySQL tests will skip"
fi

if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  if ! pgsql_up; then
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start >/dev/null 2>&1 || true
    wait_for PostgreSQL pgsql_up
  fi
  if pgsql_up; then
    if ! psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='picomdm_test'" | grep -q 1; then
      psql -h 127.0.0.1 -U postgres -qc 'CREATE DATABASE picomdm_test' >/dev/null
    fi
    export PICOMDM_TEST_PGSQL_DSN="${PICOMDM_TEST_PGSQL_DSN:-postgres://postgres@127.0.0.1:5432/picomdm_test?sslmode=disable}"
  fi
else
  log "PostgreSQL not installed: PostgreSQL tests will skip"
fi

exec "$@"
