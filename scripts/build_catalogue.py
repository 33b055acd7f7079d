"""Derive the REST catalogue (tradovate_async/_catalogue/catalogue.json) from an OpenAPI file.

Usage::

    python scripts/build_catalogue.py SWAGGER.json|SWAGGER.yaml \
        --source "arlenner/api-doc-20-dev@e9de95f assets/files/swagger.json" \
        [-o tradovate_async/_catalogue/catalogue.json]

The OpenAPI document is not part of the repository: fetch it from its public home (see
tradovate_async/_catalogue/SOURCES.md) and pass its path. A ``.yaml`` file needs PyYAML.

The catalogue is plain data, small enough to read in a review: every entity with the standard
operations it supports (``list``, ``item``, ``items``, ``find``, ``suggest``, ``deps``,
``ldeps`` and, for ``deps``/``ldeps``, the master entity and the field that links to it), every
command endpoint with its request and answer types, and every type with its fields. Field types
are reduced to a small vocabulary: ``int``, ``float``, ``str``, ``bool``, ``datetime``,
``enum`` (with its values), ``ref`` (another type) and ``list``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import re
import sys
from typing import Any

STANDARD = ("list", "item", "items", "find", "suggest", "deps", "ldeps")
# Standard operations and the query parameters the OpenAPI document gives each of them.
STANDARD_PARAMS = {
    "list": [],
    "item": ["id"],
    "items": ["ids"],
    "find": ["name"],
    "suggest": ["t", "l"],
    "deps": ["masterid"],
    "ldeps": ["masterids"],
}
# Token endpoints belong to the session (it owns the one login of a user); the generated API
# does not expose them, but the catalogue lists them so the simulator knows them.
SESSION_ONLY = {"auth/accesstokenrequest", "auth/oauthtoken", "auth/renewaccesstoken"}
# Commands that only read: safe to resend after a lost answer. Everything else may change state.
READ_ONLY = {
    "auth/me",
    "cashBalance/getcashbalancesnapshot",
    "contract/getproductfeeparams",
    "contract/rollcontract",
    "replay/checkreplaysession",
    "user/getaccounttradingpermissions",
    "user/getsecondmarketdatasubscriptioncost",
    "user/syncrequest",
}
_MASTER = re.compile(r"related to (?:multiple entities of )?(\w+) (?:entity|type)")


def snake(name: str) -> str:
    """``realizedPnL`` -> ``realized_pnl``, ``placeOCO`` -> ``place_oco``."""
    text = name.replace("PnL", "Pnl").replace("-", "_")
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", text)
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    return text.lower()


def _first_sentence(text: str | None) -> str:
    if not text:
        return ""
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line
    return ""


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _field_type(spec: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in spec:
        return {"kind": "ref", "name": _ref_name(spec["$ref"])}
    kind = spec.get("type")
    if kind == "array":
        return {"kind": "list", "of": _field_type(spec["items"])}
    if kind == "integer":
        return {"kind": "int"}
    if kind == "number":
        return {"kind": "float"}
    if kind == "boolean":
        return {"kind": "bool"}
    if kind == "string":
        if "enum" in spec:
            return {"kind": "enum", "values": list(spec["enum"])}
        if spec.get("format") == "date-time":
            return {"kind": "datetime"}
        return {"kind": "str"}
    raise ValueError(f"unsupported field type: {spec!r}")


def _type(schema: dict[str, Any]) -> dict[str, Any]:
    if schema.get("type", "object") != "object":
        raise ValueError(f"unsupported schema: {schema!r}")
    required = set(schema.get("required", ()))
    fields = []
    for wire, spec in schema.get("properties", {}).items():
        field: dict[str, Any] = {
            "wire": wire,
            "name": snake(wire),
            "type": _field_type(spec),
            "required": wire in required,
        }
        for key, out in (
            ("maxLength", "max_length"),
            ("minimum", "minimum"),
            ("maximum", "maximum"),
            ("exclusiveMinimum", "exclusive_minimum"),
        ):
            if key in spec:
                field[out] = spec[key]
        if spec.get("description") and "enum" not in spec:
            field["doc"] = _first_sentence(spec["description"])
        fields.append(field)
    return {"doc": _first_sentence(schema.get("description")), "fields": fields}


def _answer(operation: dict[str, Any]) -> dict[str, Any] | None:
    content = operation.get("responses", {}).get("200", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    return _field_type(schema) if schema else None


def _standard(
    record: dict[str, Any],
    path: str,
    name: str,
    operation: dict[str, Any],
    schemas: dict[str, Any],
) -> None:
    """Add a standard operation (``list``, ``deps``...) to an entity record, checked."""
    params = [p["name"] for p in operation.get("parameters", [])]
    if params != STANDARD_PARAMS[name]:
        raise ValueError(f"{path}: unexpected parameters {params}")
    answer = _answer(operation) or {}
    model = answer["of"]["name"] if answer.get("kind") == "list" else answer.get("name")
    if record["model"] not in (None, model):
        raise ValueError(f"{path}: answers {model}, not {record['model']}")
    record["model"] = model
    record["operations"].append(name)
    if name in ("deps", "ldeps"):
        found = _MASTER.search(operation.get("description", ""))
        if found is None:
            raise ValueError(f"{path}: no master entity in the description")
        master = found.group(1)
        link = master[0].lower() + master[1:] + "Id"
        # One-to-one dependents (marginSnapshot of an account, contractMargin of a
        # contract...) carry no link field: their id is the master's id.
        record["master"] = {
            "entity": master[0].lower() + master[1:],
            "field": link if link in schemas[model].get("properties", {}) else "id",
        }


def _command(entity: str, name: str, method: str, operation: dict[str, Any]) -> dict[str, Any]:
    body = operation.get("requestBody", {}).get("content", {}).get("application/json")
    endpoint = f"{entity}/{name}"
    return {
        "entity": entity,
        "endpoint": endpoint,
        "name": name if name in ("create", "update") else snake(operation["operationId"]),
        "method": method.upper(),
        "request": _ref_name(body["schema"]["$ref"]) if body else None,
        "answer": _answer(operation),
        "read_only": endpoint in READ_ONLY,
        "session_only": endpoint in SESSION_ONLY,
        "doc": _first_sentence(operation.get("description")),
    }


def build(document: dict[str, Any], source: str, digest: str) -> dict[str, Any]:
    schemas = document["components"]["schemas"]
    entities: dict[str, dict[str, Any]] = {}
    commands: list[dict[str, Any]] = []
    for path, methods in document["paths"].items():
        entity, _, name = path.strip("/").partition("/")
        record = entities.setdefault(entity, {"name": entity, "model": None, "operations": []})
        for method, operation in methods.items():
            if name in STANDARD:
                _standard(record, path, name, operation, schemas)
            else:
                commands.append(_command(entity, name, method, operation))
    order = {name: i for i, name in enumerate(STANDARD)}
    for record in entities.values():
        record["operations"].sort(key=order.__getitem__)
    return {
        "format": 1,
        "source": {
            "document": source,
            "sha256": digest,
            "title": document.get("info", {}).get("title"),
            "version": document.get("info", {}).get("version"),
        },
        "entities": sorted(entities.values(), key=lambda e: e["name"].lower()),
        "commands": sorted(commands, key=lambda c: c["endpoint"].lower()),
        "types": {name: _type(schemas[name]) for name in sorted(schemas)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("swagger", type=pathlib.Path)
    parser.add_argument("--source", required=True, help="where the file came from (recorded)")
    parser.add_argument(
        "-o",
        "--output",
        type=pathlib.Path,
        default=pathlib.Path(__file__).parent.parent / "tradovate_async/_catalogue/catalogue.json",
    )
    args = parser.parse_args(argv)
    raw = args.swagger.read_bytes()
    if args.swagger.suffix in (".yaml", ".yml"):
        import yaml  # type: ignore[import-untyped]

        document = yaml.safe_load(raw)
    else:
        document = json.loads(raw)
    catalogue = build(document, args.source, hashlib.sha256(raw).hexdigest())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(catalogue, indent=1, sort_keys=False) + "\n")
    n_ops = sum(len(e["operations"]) for e in catalogue["entities"])
    print(
        f"{args.output}: {sum(1 for e in catalogue['entities'] if e['model'])} entities, "
        f"{n_ops} entity operations, {len(catalogue['commands'])} commands, "
        f"{len(catalogue['types'])} types",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
