#!/usr/bin/env bash
# A three-node RabbitMQ cluster on 127.0.0.1 beside the machine's own RabbitMQ:
#   scripts/rabbitmq-cluster.sh start|stop|status
# Nodes aecluster1..3@localhost on ports 5681-5683 (distribution 25681-25683), run
# as the rabbitmq user; data in $ASYNCEVENTS_CLUSTER_DIR (default
# /tmp/asyncevents-rabbitmq-cluster), removed by `stop`. The node on 5672 is never
# touched. Needs root (or the rabbitmq user). The work is done by faults/cluster.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
case "${1:-}" in
  start|stop|status) exec "$PYTHON" -m faults.cluster "$1" ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
