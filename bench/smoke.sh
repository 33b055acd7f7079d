#!/usr/bin/env bash
# The benchmarks with small sizes, so CI shows that each still runs and prints its figures.
# Figures from a CI machine are noisy; the README's figures come from the full default runs.
set -euo pipefail
cd "$(dirname "$0")/.."
python bench/session.py --requests 50 --rounds 4 --concurrent-requests 500 --concurrent-rounds 2 --paired-rounds 2
python bench/websocket.py --events 3000 --rounds 2 --rounds-10 3 --drops 3 --memory-events 20000
python bench/fleet.py --processes 4 --lifetimes 2
python bench/soak.py --days 1 --minutes 0.25 --clock-days 0.5 --clock-minutes 0.1
python bench/account_state.py --events 5000 --rounds 2 --orders 2000 --snapshot 1000 --end-to-end 2000
python bench/api.py --entities 2000 --rounds 3
python bench/instructions.py --small 500 --large 1000
