#!/usr/bin/env bash
# Runs every example against the simulator (and a throw-away redis-server), as CI does, so
# that no example can rot. Needs the package installed with the dev extra.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

port=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
tradovate-async sim --port "$port" --token-lifetime 30 --market-speed 60 >"$work/sim.log" 2>&1 &
pids+=($!)
redis_port=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis_bin=$(python -c 'import sys; sys.path.insert(0, "tests"); from redis_server import find_redis_server; print(find_redis_server() or "")')
[ -n "$redis_bin" ] || { echo "no redis-server"; exit 1; }
"$redis_bin" --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)

for _ in $(seq 100); do
  grep -q "Press Ctrl-C" "$work/sim.log" 2>/dev/null && break
  sleep 0.1
done
grep -q "Press Ctrl-C" "$work/sim.log" || { cat "$work/sim.log"; exit 1; }

# Credentials of the simulator's default user, the way a user would write them into .env.
cat >"$work/.env" <<ENV
TRADOVATE_API_URL=http://127.0.0.1:$port/v1
TRADOVATE_WS_URL=ws://127.0.0.1:$port/v1/websocket
TRADOVATE_MD_URL=ws://127.0.0.1:$port/md/v1/websocket
TRADOVATE_REPLAY_URL=ws://127.0.0.1:$port/replay/v1/websocket
TRADOVATE_USERNAME=sim-user
TRADOVATE_PASSWORD=sim-password
TRADOVATE_APP_ID=tradovate-async-sim
TRADOVATE_SEC=sim-secret
TRADOVATE_DEVICE_ID=examples-ci
TRADOVATE_TOKEN_FILE=$work/tokens.json
TRADOVATE_REDIS_URL=redis://127.0.0.1:$redis_port/0
ENV

run() {
  echo "--- examples/$*"
  (cd "$work" && timeout 60 python "$OLDPWD/examples/$@") || { echo "example failed: $*"; tail -30 "$work/sim.log"; exit 1; }
}
[ -z "${ONLY:-}" ] || { run $ONLY; exit 0; }
run get_token.py
EXAMPLE_SECONDS=3 run long_running_bot.py  # right after get_token: it reuses the stored token
run me.py
run portfolio.py
EXAMPLE_SECONDS=3 EXAMPLE_DEMO_ORDER=1 run props_consumer.py
EXAMPLE_QUOTES=3 run quote_stream.py ESZ6 CLF7
EXAMPLE_LIVE=2 run chart_history.py ESZ6
EXAMPLE_UPDATES=3 run replay_strategy.py ESZ6
run redis_fleet.py 4
echo "all examples ran"
