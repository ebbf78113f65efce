#!/usr/bin/env bash
# Start a Ray head for batchai on this machine, offering itself as one batchai node.
#
#   bash scripts/ray-head.sh [--port 6379] [--node-ip 127.0.0.1]
#   batchai server start --ray-address 127.0.0.1:6379 --detach
#
# More machines join the Ray cluster as batchai nodes with:
#   ray start --address <head ip>:6379 --resources '{"batchai": 1}'
# Stop with: ray stop
set -euo pipefail
port=6379
node_ip=127.0.0.1
while [ $# -gt 0 ]; do
    case "$1" in
        --port) port="$2"; shift 2 ;;
        --node-ip) node_ip="$2"; shift 2 ;;
        *) echo "usage: $0 [--port PORT] [--node-ip IP]" >&2; exit 2 ;;
    esac
done
if ! command -v ray >/dev/null; then
    echo "ray is not installed: pip install 'batchai[ray]'" >&2
    exit 1
fi
if [ "$node_ip" = 127.0.0.1 ]; then
    # Keep a one-machine cluster on loopback (otherwise Ray picks the machine's external address).
    export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
fi
ray start --head --port "$port" --node-ip-address "$node_ip" --resources '{"batchai": 1}' --disable-usage-stats
echo "batchai: start the server with --ray-address $node_ip:$port"
if [ "$node_ip" = 127.0.0.1 ]; then
    echo "batchai: Ray's own commands (ray status, ray stop) need RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 here"
fi
