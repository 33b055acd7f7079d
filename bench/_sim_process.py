"""The simulator in its own process, driven over stdin, so that a benchmark's client and the
server do not share one interpreter lock. Prints one JSON line with the URLs, then answers
``burst COUNT BATCH``, ``drop KIND`` and ``quit``, one line each."""

from __future__ import annotations

import json
import sys

from tradovate_async.sim import SimulatedTradovate


def main() -> None:
    sim = SimulatedTradovate(quote_interval=3600.0)
    sim.start()
    try:
        urls = {"api_url": sim.api_url, "ws_url": sim.ws_url, "md_url": sim.md_url}
        print(json.dumps(urls), flush=True)
        for line in sys.stdin:
            command, *args = line.split()
            if command == "burst":
                sent = sim.start_md_burst(int(args[0]), int(args[1])).result()
                print(f"sent {sent}", flush=True)
            elif command == "drop":
                print(f"dropped {sim.drop_sockets(args[0] if args else None)}", flush=True)
            elif command == "quit":
                break
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
