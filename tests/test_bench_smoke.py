"""CI smoke-runs every benchmark (`bench/smoke.sh`): a script added to `bench/` without a
line there would never run in CI."""

from __future__ import annotations

from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_smoke_runs_every_benchmark_script() -> None:
    scripts = sorted(p.name for p in BENCH.glob("*.py") if not p.name.startswith("_"))
    assert scripts, "no benchmark scripts found"
    commands = {
        line.split()[1]
        for line in (BENCH / "smoke.sh").read_text().splitlines()
        if line.startswith("python bench/")
    }
    missing = [name for name in scripts if f"bench/{name}" not in commands]
    assert not missing, f"bench/smoke.sh does not run: {missing}"
