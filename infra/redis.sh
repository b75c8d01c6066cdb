#!/usr/bin/env bash
# Run a real Redis server (Debian's redis-server) on loopback for streamrec.
# usage: infra/redis.sh start|stop|status
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
RUN=${STREAMREC_RUN_DIR:-$root/.run}
PORT=${STREAMREC_REDIS_PORT:-16379}
DIR="$RUN/redis"
PIDFILE="$DIR/redis.pid"

install() {
  command -v redis-server >/dev/null && return
  echo "redis.sh: installing redis-server from Debian" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
}
running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

start() {
  if running; then echo "redis: already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"; return; fi
  install; mkdir -p "$DIR"
  redis-server --bind 127.0.0.1 --port "$PORT" --daemonize yes --pidfile "$PIDFILE" \
    --logfile "$DIR/redis.log" --dir "$DIR" --save '' --appendonly no --maxmemory 2gb --protected-mode yes
  for _ in $(seq 1 40); do
    if redis-cli -p "$PORT" ping >/dev/null 2>&1; then echo "redis: up on 127.0.0.1:$PORT (log $DIR/redis.log)"; return; fi
    sleep 0.25
  done
  echo "redis: not answering (log $DIR/redis.log)" >&2; exit 1
}

stop() {
  if ! running; then echo "redis: not running"; rm -f "$PIDFILE"; return; fi
  redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || kill -TERM "$(cat "$PIDFILE")" 2>/dev/null || true
  for _ in $(seq 1 40); do running || break; sleep 0.25; done
  rm -f "$PIDFILE"; echo "redis: stopped"
}

status() {
  if running && redis-cli -p "$PORT" ping >/dev/null 2>&1; then echo "redis: running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"
  else echo "redis: not running"; return 1; fi
}

case "${1:-}" in
  start) start ;; stop) stop ;; status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
