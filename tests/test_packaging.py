"""What a user gets from ``pip install``: one version everywhere, ``py.typed``, the entry points.

CI also runs this file against the installed wheel (``TRADOVATE_ASYNC_TESTS_ON_WHEEL=1``), where
the distribution's file list is the wheel's own.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tradovate_async

ON_WHEEL = os.environ.get("TRADOVATE_ASYNC_TESTS_ON_WHEEL") == "1"
ROOT = Path(__file__).resolve().parents[1]


def test_the_version_has_one_source() -> None:
    metadata = importlib.metadata.version("tradovate-async")
    assert metadata == tradovate_async.__version__
    out = subprocess.run(
        [sys.executable, "-m", "tradovate_async", "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == f"tradovate-async {metadata}"


def test_the_changelog_names_the_current_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog
    assert f"## [{tradovate_async.__version__}]" in changelog


def test_py_typed_ships_with_the_package() -> None:
    assert (Path(tradovate_async.__file__).parent / "py.typed").is_file()


@pytest.mark.skipif(not ON_WHEEL, reason="an editable install lists no package files")
def test_the_wheel_records_its_files() -> None:
    files = {str(f) for f in importlib.metadata.files("tradovate-async") or []}
    for needed in ["tradovate_async/py.typed", "tradovate_async/sim/__init__.py"]:
        assert needed in files


def test_entry_points_are_registered() -> None:
    dist = importlib.metadata.distribution("tradovate-async")
    scripts = {(e.group, e.name): e.value for e in dist.entry_points}
    assert scripts[("console_scripts", "tradovate-async")] == "tradovate_async._cli:main"
