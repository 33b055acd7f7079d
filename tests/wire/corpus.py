"""The wire corpus: real Tradovate answers and frames from public sources, one JSON file each.

Every sample in ``samples/`` says where it came from (``source``) and whether it was recorded
from the real server or written from documentation (``provenance``), and what the library must
make of it (``expect``). ``test_corpus.py`` feeds each one through the codec and the
interpreters; ``test_sim_drift.py`` checks the simulator's own answers against the same shapes.
See docs/guides/wire-corpus.md for the fields and how to add a sample.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SAMPLES_DIR = Path(__file__).parent / "samples"
_OFFSET = re.compile(r"-?[0-9]+")
KINDS = frozenset({"token", "rest", "frame"})
PROVENANCES = frozenset({"recorded", "documented"})


@dataclass(frozen=True)
class Sample:
    id: str
    kind: str
    provenance: str
    source: dict[str, Any]
    expect: dict[str, Any]
    raw: dict[str, Any]

    @property
    def shape(self) -> str | None:
        value = self.raw.get("shape")
        return value if isinstance(value, str) else None

    @property
    def status(self) -> int:
        status = self.raw["status"]
        assert isinstance(status, int)
        return status

    @property
    def body_bytes(self) -> bytes:
        """The HTTP body as the server sent it: ``body`` (JSON) or ``text`` (verbatim)."""
        if "body" in self.raw:
            return json.dumps(self.raw["body"]).encode()
        text = self.raw.get("text", "")
        assert isinstance(text, str)
        return text.encode()

    @property
    def payload(self) -> Any:
        """The JSON a sample carries: the HTTP body, or the messages of an ``a`` frame."""
        if self.kind == "frame":
            frame = self.raw["frame"]
            return json.loads(frame[1:]) if frame.startswith(("a", "c")) else None
        return self.raw.get("body")


def load_samples() -> list[Sample]:
    samples = []
    for path in sorted(SAMPLES_DIR.glob("*.json")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        samples.append(
            Sample(
                id=raw["id"],
                kind=raw["kind"],
                provenance=raw["provenance"],
                source=raw["source"],
                expect=raw["expect"],
                raw=raw,
            )
        )
    return samples


SAMPLES = load_samples()


def of_kind(kind: str) -> list[Sample]:
    return [s for s in SAMPLES if s.kind == kind]


def json_shape(value: Any) -> Any:
    """The structure of a JSON value: objects map keys to shapes, arrays hold the merged shape
    of their items, scalars become their JSON type name."""
    if isinstance(value, dict):
        if value and all(_OFFSET.fullmatch(key) for key in value):
            # A map keyed by numbers (histogram ``items``: price offset -> size).
            merged_item: Any = None
            for item in value.values():
                merged_item = merge_shapes(merged_item, json_shape(item))
            return {"<offset>": merged_item}
        return {key: json_shape(item) for key, item in value.items()}
    if isinstance(value, list):
        merged: Any = None
        for item in value:
            merged = merge_shapes(merged, json_shape(item))
        return [merged]
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "null"


def merge_shapes(a: Any, b: Any) -> Any:
    """The union of two shapes (what either may hold). ``null`` (and an empty array's unknown
    item) merges into the other shape: documents use null for "absent"."""
    if a is None or a == "null":
        return b
    if b is None or b == "null":
        return a
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: merge_shapes(a.get(k), b.get(k)) for k in a.keys() | b.keys()}
    if isinstance(a, list) and isinstance(b, list):
        return [merge_shapes(a[0], b[0])]
    if a == b:
        return a
    left = a if isinstance(a, frozenset) else frozenset([_key(a)])
    right = b if isinstance(b, frozenset) else frozenset([_key(b)])
    return left | right


def _key(shape: Any) -> str:
    if isinstance(shape, dict):
        return "object"
    if isinstance(shape, list):
        return "array"
    return str(shape)


def shape_drift(actual: Any, allowed: Any, where: str = "$") -> list[str]:
    """Where ``actual`` (a shape) holds a field or a type that ``allowed`` (the corpus) never
    shows. A ``null`` the simulator sends, or a field the corpus only shows as ``null`` or in
    empty arrays, is not compared."""
    if allowed is None or allowed == "null" or actual == "null":
        return []
    if isinstance(allowed, frozenset):  # a field the corpus shows with several types
        if _key(actual) in allowed:
            return []
        return [f"{where}: {_key(actual)} where the corpus has {sorted(allowed)}"]
    if isinstance(allowed, dict):
        if not isinstance(actual, dict):
            return [f"{where}: {_key(actual)} where the corpus has an object"]
        problems = []
        for key, value in actual.items():
            if key not in allowed:
                problems.append(f"{where}.{key}: field the real server is not known to send")
            else:
                problems.extend(shape_drift(value, allowed[key], f"{where}.{key}"))
        return problems
    if isinstance(allowed, list):
        if not isinstance(actual, list):
            return [f"{where}: {_key(actual)} where the corpus has an array"]
        if actual[0] is None:
            return []
        return shape_drift(actual[0], allowed[0], f"{where}[]")
    if _key(actual) != allowed:
        return [f"{where}: {_key(actual)} where the corpus has {allowed}"]
    return []


def missing_fields(actual: Any, samples: list[Any], where: str = "$") -> list[str]:
    """Top-level fields every corpus sample of a kind carries but ``actual`` lacks."""
    objects = [s for s in samples if isinstance(s, dict)]
    if not objects or not isinstance(actual, dict):
        return []
    common = set.intersection(*(set(o) for o in objects))
    return [f"{where}.{key}: missing (every sample has it)" for key in sorted(common - set(actual))]
