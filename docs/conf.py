"""Sphinx configuration: the reference from docstrings (autodoc), guides in Markdown (MyST).

Built by CI with ``sphinx-build -W --keep-going -n``: every warning fails, and nitpicky mode
makes every cross-reference that does not resolve a warning. Third-party names are not
resolved (CI has no network for intersphinx), so they are listed in ``nitpick_ignore_regex``.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import tradovate_async
import tradovate_async.sim
import tradovate_async.testing
from tradovate_async import __version__

project = "tradovate-async"
author = "tradovate-async contributors"
copyright = "2026, tradovate-async contributors"
release = version = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
html_theme = "alabaster"
html_static_path: list[str] = []

autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"

napoleon_google_docstring = True
napoleon_numpy_docstring = False

nitpicky = True
# Names outside this package: the standard library and dependencies (no intersphinx offline).
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(httpx|ssl|anyio|websockets|redis|msgspec|datetime|dt|collections|typing"
        r"|contextlib|types|logging|random|enum|pathlib|os|asyncio|concurrent|pytest|_pytest"
        r"|starlette|uvicorn|threading|socket|json|ipaddress|email|filelock|cryptography)(\..*)?",
    ),
    (
        r"py:.*",
        r"(Any|Self|Literal|TypeAlias|Callable|Awaitable|Mapping|Iterable|Iterator"
        r"|AsyncIterator|Sequence|Generator|AsyncGenerator|Coroutine|TypeVar|Path|T|P|R)",
    ),
    (
        r"py:.*",
        r"(int|str|float|bool|bytes|object|None|dict|list|tuple|set|frozenset|type"
        r"|BaseException|Exception|ValueError|RuntimeError|TimeoutError|OSError|NoneType)",
    ),
]


# ``tradovate_async/__init__.py`` shows public classes as ``tradovate_async.X``; annotations of
# msgspec Structs and dataclasses are then evaluated in that module's namespace, which lacks
# private aliases such as ``EventType``. For the docs build only, lend it the names of the
# private modules (never overriding a public name). The packages import a module when one of its
# names is first asked for: ask for every public name first, so that all of them are loaded.
for _package in (tradovate_async, tradovate_async.sim, tradovate_async.testing):
    for _public_name in _package.__all__:
        getattr(_package, _public_name)
for _module_name, _module in list(sys.modules.items()):
    if _module_name.startswith("tradovate_async._") and _module is not None:
        for _name, _value in vars(_module).items():
            if not _name.startswith("__") and not hasattr(tradovate_async, _name):
                setattr(tradovate_async, _name, _value)

PUBLIC = {
    "tradovate_async": set(tradovate_async.__all__),
    "tradovate_async.sim": set(tradovate_async.sim.__all__),
    "tradovate_async.testing": set(tradovate_async.testing.__all__),
}
_PRIVATE_PATH = re.compile(r"^(tradovate_async(?:\.sim)?)\._[\w.]*?\.(\w+)$")
_stashed: dict[str, list[str]] = {}


def _stash_attribute_docstring(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Napoleon reads ``text: more`` on the first line of a property as ``type: description``;
    our properties have no inline types, so their docstrings bypass napoleon."""
    if what in {"attribute", "data", "property"}:
        _stashed[name] = list(lines)
        lines[:] = []


def _restore_attribute_docstring(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    if name in _stashed:
        lines[:] = _stashed.pop(name)


def _public_path(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """``tradovate_async._ws_codec.Event`` (a private path, as annotations give it) links to the
    public ``tradovate_async.Event`` when the name is re-exported there."""
    if node.get("refdomain") != "py":
        return None
    match = _PRIVATE_PATH.match(node.get("reftarget", ""))
    if match is None or match.group(2) not in PUBLIC[match.group(1)]:
        return None
    target = f"{match.group(1)}.{match.group(2)}"
    domain = env.get_domain("py")
    return domain.resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], target, node, contnode
    )


def _private_name(app: Any, domain: Any, node: Any) -> bool | None:
    """Private helpers and type aliases named in signatures (``_schedule.Blocked``, ``SocketKind``)
    have no page; a public name that does not resolve still fails the build."""
    target = node.get("reftarget", "")
    name = target.rsplit(".", 1)[-1]
    if any(name in names for names in PUBLIC.values()):
        return None
    if target.startswith(("tradovate_async.", "_")) or "." not in target:
        return True
    return None


def _hide_private_bases(app: Any, name: str, obj: Any, options: Any, bases: list[Any]) -> None:
    """A private mixin (``sim._controls.SimControls``) is an implementation detail: the sim
    reference shows its members on the class (``:inherited-members:``), not the mixin."""
    public = set().union(*PUBLIC.values())
    kept = [
        b
        for b in bases
        if not getattr(b, "__module__", "").startswith("tradovate_async.sim._")
        or getattr(b, "__name__", "") in public
    ]
    bases[:] = kept or [object]


def setup(app: Any) -> None:
    app.connect("autodoc-process-bases", _hide_private_bases)
    app.connect("autodoc-process-docstring", _stash_attribute_docstring, priority=400)
    app.connect("autodoc-process-docstring", _restore_attribute_docstring, priority=600)
    app.connect("missing-reference", _public_path)
    app.connect("warn-missing-reference", _private_name)
