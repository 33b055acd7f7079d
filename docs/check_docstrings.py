"""Fail when a public name has no docstring of its own: the reference would show it bare.

Public names are those in ``__all__`` of the public modules (``tradovate_async``,
``tradovate_async.sim``, ``tradovate_async.testing``); for classes, also their public methods
and properties defined in the class (a method that implements a documented protocol or base
method may inherit that docstring, as the reference shows it). Constants are documented in
their module's docstring and are not checked here. Run: ``python docs/check_docstrings.py``.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Iterator
from typing import Any

MODULES = ("tradovate_async", "tradovate_async.sim", "tradovate_async.testing")


def _own_doc(obj: Any) -> bool:
    doc = getattr(obj, "__doc__", None)
    return bool(doc and doc.strip())


def _inherited_doc(cls: type, name: str, protocols: list[type]) -> bool:
    """A docstring for ``name`` on a base class, or on a protocol the class implements."""
    for base in [*cls.__mro__[1:], *protocols]:
        member = base.__dict__.get(name)
        if member is not None and _own_doc(_unwrap(member)):
            return True
    return False


def _unwrap(member: Any) -> Any:
    if isinstance(member, (staticmethod, classmethod)):
        return member.__func__
    if isinstance(member, property):
        return member.fget
    return member


def _own_members(cls: type) -> dict[str, Any]:
    """The members ``cls`` defines, with those of its private bases (mixins whose members the
    reference shows on ``cls``, as ``:inherited-members:`` asks for the simulator)."""
    members: dict[str, Any] = {}
    for base in reversed(cls.__mro__):
        private = base.__module__.startswith("tradovate_async.") and "._" in base.__module__
        if base is cls or (private and base.__name__[0] != "_"):
            members.update(vars(base))
    return members


def _members(cls: type) -> Iterator[tuple[str, Any]]:
    for name, member in _own_members(cls).items():
        if name.startswith("_"):
            continue
        inner = _unwrap(member)
        if inspect.isfunction(inner):
            yield name, inner


def missing(protocols: list[type]) -> Iterator[str]:
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        if not _own_doc(module):
            yield module_name
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if not _own_doc(obj) and not hasattr(obj, "_pytestfixturefunction"):
                yield f"{module_name}.{name}"
            if inspect.isclass(obj):
                for member_name, member in _members(obj):
                    if not _own_doc(member) and not _inherited_doc(obj, member_name, protocols):
                        yield f"{module_name}.{name}.{member_name}"


def main() -> int:
    import tradovate_async

    public = [getattr(tradovate_async, name) for name in tradovate_async.__all__]  # loads them
    protocols = [
        obj for obj in public if inspect.isclass(obj) and getattr(obj, "_is_protocol", False)
    ]
    names = sorted(set(missing(protocols)))
    for name in names:
        print(f"missing docstring: {name}")
    print(f"{len(names)} public names without a docstring")
    return 1 if names else 0


if __name__ == "__main__":
    sys.exit(main())
