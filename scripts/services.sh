#!/usr/bin/env bash
# Make sure PostgreSQL and RabbitMQ answer on this machine (the production-profile tests use them):
# start each with `service` if it does not answer, then wait until it does. Idempotent.
set -euo pipefail
PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
RABBITMQ_HOST=${RABBITMQ_HOST:-127.0.0.1}
RABBITMQ_PORT=${RABBITMQ_PORT:-5672}
SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo "sudo")

postgres_up() { pg_isready -q -h "$PGHOST" -p "$PGPORT"; }
rabbitmq_up() { (exec 3<>"/dev/tcp/$RABBITMQ_HOST/$RABBITMQ_PORT") 2>/dev/null; }

# ensure NAME SERVICE CHECK SECONDS: start SERVICE unless CHECK succeeds, then wait up to SECONDS for it.
ensure() {
    local name=$1 service=$2 check=$3 seconds=$4
    $check && return 0
    if ! command -v service >/dev/null || [ ! -e "/etc/init.d/$service" ]; then
        echo "$name does not answer and is not installed as a service; install it: apt-get install $service" >&2
        exit 1
    fi
    echo "$name does not answer: service $service start"
    $SUDO service "$service" start >/dev/null
    for _ in $(seq "$seconds"); do
        $check && return 0
        sleep 1
    done
    echo "$name still does not answer ${seconds} s after \`service $service start\`" >&2
    exit 1
}

command -v pg_isready >/dev/null || { echo 'pg_isready not found; install it: apt-get install postgresql' >&2; exit 1; }
ensure "PostgreSQL ($PGHOST:$PGPORT)" postgresql postgres_up 30
ensure "RabbitMQ ($RABBITMQ_HOST:$RABBITMQ_PORT)" rabbitmq-server rabbitmq_up 60
