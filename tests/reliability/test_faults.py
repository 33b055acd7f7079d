"""The fault table, run: one row per fault, each against real servers, files and processes.

The rows live in ``fault_table.py`` (``python -m tests.reliability.fault_table`` prints them as
Markdown for the README). A row marked with a known bug runs as ``xfail(strict=True)``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import anyio
import pytest

from .fault_table import CASES, FaultCase, Lab
from .hostile_faults import HOSTILE_CASES

ROW_TIMEOUT = 60.0


def _param(case: FaultCase) -> Any:
    # A known bug shows as a failed assertion of its check; any other failure stays red.
    bug = pytest.mark.xfail(strict=True, raises=AssertionError, reason=f"bug: {case.bug}")
    marks = [bug] if case.bug else []
    return pytest.param(case, id=case.name, marks=marks)


def test_the_table_is_complete() -> None:
    names = [case.name for case in [*CASES, *HOSTILE_CASES]]
    assert len(names) >= 20 and len(set(names)) == len(names)
    assert all(case.fault and case.expected_outcome for case in [*CASES, *HOSTILE_CASES])


@pytest.mark.parametrize("case", [_param(case) for case in [*CASES, *HOSTILE_CASES]])
async def test_fault(case: FaultCase, tmp_path: Path, spawn_python: Any) -> None:
    with anyio.fail_after(ROW_TIMEOUT):
        async with contextlib.AsyncExitStack() as stack:
            lab = Lab(stack, tmp_path, spawn_python)
            await case.setup(lab)
            await case.check(lab)
            # No row may end up in the library's last-resort handlers for unforeseen errors.
            assert not [m for m in lab.warnings if "unexpected" in m]
