"""Market data in instructions per event: the library against the best hand-written loops,
counted by valgrind rather than timed.

``bench/websocket.py`` times the clients in interleaved rounds. On a shared machine a round's
rate moves by 10 % or more, so a ratio a few percent above 1.0 needs many rounds to tell from
noise. Instructions executed do not depend on what else the machine runs: each client runs in
a process of its own under ``valgrind --tool=cachegrind`` (the sender, a child process, is not
counted), once with a small and once with a large burst from the same fast sender. The
difference of the two totals over the difference of the events is what one more event costs,
with start-up, imports and connecting cancelled out.

An instruction is not a nanosecond (a cache miss costs more than an add), so this is the
second measure, beside the timed one, not a replacement for it. Hash randomisation is fixed
(``PYTHONHASHSEED=0``) so that dict work is the same from run to run.

Run: ``python bench/instructions.py [--small 10000] [--large 30000]`` (needs valgrind)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _child import ChildServer
from websocket import library_client, raw_client, typed_client

from tradovate_async import TradovateSession
from tradovate_async.sim import SimulatedTradovate

#: The clients counted, the library's first; the loops are ``bench/websocket.py``'s best.
CLIENTS = ("library", "library typed quotes", "orjson", "msgspec")
LOOPS = ("orjson", "msgspec")
WARM_UP_EVENTS = 1_000


async def run_client(name: str, url: str, events: int, batch: int) -> None:
    """One client takes a warm-up burst, then ``events`` (the child process's whole work)."""
    if name in ("orjson", "msgspec"):
        for count in (WARM_UP_EVENTS, events):
            await raw_client(url, count, batch, name)
        return
    client = library_client if name == "library" else typed_client
    async with SimulatedTradovate() as sim, TradovateSession(sim.config()) as session:
        for count in (WARM_UP_EVENTS, events):
            await client(session, url, count, batch)


def instructions(name: str, batch: int, events: int, url: str, scratch: Path) -> int:
    """Instructions the client process executed in all, from cachegrind's summary line."""
    out = scratch / f"{name.replace(' ', '-')}.{batch}.{events}.out"
    command = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--branch-sim=no",
        f"--cachegrind-out-file={out}",
        sys.executable,
        __file__,
        "--child",
        name,
        "--url",
        url,
        "--events",
        str(events),
        "--batch",
        str(batch),
    ]
    environment = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, env=environment, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.splitlines()[-15:])
        raise RuntimeError(f"{name} ({events} events, {batch}/frame) failed:\n{tail}")
    for line in out.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError(f"no summary line in {out}")


def per_event(url: str, small: int, large: int, workers: int) -> dict[tuple[str, int], float]:
    """Instructions per event for every client and frame shape."""
    jobs = [
        (name, batch, events) for batch in (1, 10) for name in CLIENTS for events in (small, large)
    ]
    with tempfile.TemporaryDirectory() as scratch, ThreadPoolExecutor(workers) as pool:
        counted = pool.map(
            lambda job: instructions(job[0], job[1], job[2], url, Path(scratch)), jobs
        )
        totals = dict(zip(jobs, counted, strict=True))
    return {
        (name, batch): (totals[name, batch, large] - totals[name, batch, small]) / (large - small)
        for batch in (1, 10)
        for name in CLIENTS
    }


def report(counts: dict[tuple[str, int], float]) -> None:
    for batch in (1, 10):
        print(f"\n{batch} event(s) per frame, instructions per event (client process):")
        for name in CLIENTS:
            print(f"  {name:>22}: {counts[name, batch]:>10,.0f}")
    print()
    for batch in (1, 10):
        for name in ("library", "library typed quotes"):
            ratios = {loop: counts[loop, batch] / counts[name, batch] for loop in LOOPS}
            worse = min(ratios, key=ratios.__getitem__)
            print(
                f"instructions: best loop (recv+{worse}, of orjson and msgspec the one {name} "
                f"compares worse with) / {name} at {batch}/frame: {ratios[worse]:.3f} "
                "(above 1: the library executes fewer)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000, help="events of the small burst")
    parser.add_argument("--large", type=int, default=30_000, help="events of the large burst")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--events", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(run_client(args.child, args.url, args.events, args.batch))
        return
    if shutil.which("valgrind") is None:
        sys.exit("bench/instructions.py needs valgrind (Debian: apt install valgrind)")
    small, large = (n - n % 10 for n in (args.small, args.large))
    if not 0 < small < large:
        sys.exit("--small must be above 0 and below --large")
    sender = ChildServer("_fast_sender.py")
    try:
        report(per_event(sender.url, small, large, workers=os.cpu_count() or 1))
    finally:
        sender.close()


if __name__ == "__main__":
    main()
