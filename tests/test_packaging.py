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


def test_every_public_name_loads_under_the_public_path() -> None:
    from tradovate_async._exports import DEFINED_IN

    assert tradovate_async.__all__ == sorted(tradovate_async.__all__)
    defined = [name for names in DEFINED_IN.values() for name in names]
    assert sorted([*defined, "__version__"]) == tradovate_async.__all__
    assert set(tradovate_async.__all__) <= set(dir(tradovate_async))
    for module, names in DEFINED_IN.items():
        for name in names:
            value = getattr(tradovate_async, name)
            assert value is getattr(importlib.import_module(module, "tradovate_async"), name)
            if isinstance(value, type):
                assert value.__module__ == "tradovate_async", name
    with pytest.raises(AttributeError, match="no attribute 'NoSuchName'"):
        tradovate_async.NoSuchName  # type: ignore[attr-defined]  # noqa: B018


# Run in a fresh interpreter: this one has imported everything already.
LAZY_IMPORTS = """
import sys
import tradovate_async
import tradovate_async._cli
from tradovate_async._file_store import FileTokenStore

heavy = {"httpx", "aiohttp", "starlette", "uvicorn", "tradovate_async.api", "tradovate_async.sim"}
print(sorted(m for m in sys.modules if m in heavy))
# reached through its private module, before the package was asked for it
print(FileTokenStore.__module__, sys.modules["tradovate_async._errors"].TokenStoreError.__module__)
from tradovate_async import TradovateSession
print(TradovateSession.__module__, "httpx" in sys.modules)
"""


def test_the_package_imports_its_modules_when_first_used() -> None:
    """``import tradovate_async``, the CLI's parser and a token store load no HTTP client, no API
    and no simulator (child processes and ``tradovate-async --help`` start fast); a public class
    shows ``tradovate_async.X`` however it was reached."""
    out = subprocess.run(
        [sys.executable, "-c", LAZY_IMPORTS], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.splitlines() == [
        "[]",
        "tradovate_async tradovate_async",
        "tradovate_async True",
    ]
