"""The config's JSON Schema, for editors (yaml-language-server) — built from the same builder
signatures and section models that validation uses, so it cannot drift from what tunekit accepts."""

from __future__ import annotations

from typing import Any

from tunekit.config.sections import (
    SECTIONS,
    STUDY_PARTS,
    SectionSpec,
    StudySection,
    TrackingSection,
    TrainSection,
    _args_model,
)


def _component_schema(spec: SectionSpec) -> dict[str, Any]:
    registry = spec.builders()
    common = spec.common.model_json_schema().get("properties", {})
    variants = []
    for name in registry.names():
        args = _args_model(spec.builder_of(registry.get(name)), spec.skip).model_json_schema()
        props = {spec.name_key: {"const": name}, **common, **args.get("properties", {})}
        variant = {"type": "object", "properties": props, "additionalProperties": False}
        if args.get("required"):
            variant["required"] = args["required"]
        if args.get("$defs"):
            variant["$defs"] = args["$defs"]
        doc = (registry.get(name).__doc__ if callable(registry.get(name)) else None) or ""
        if doc:
            variant["description"] = doc.strip().splitlines()[0]
        variants.append(variant)
    names = registry.names()
    return {
        "type": "object",
        "properties": {spec.name_key: {"enum": names + (["auto"] if spec.section == "loss" else [])}},
        "anyOf": variants,
    }


SEARCH_ENTRY = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "low": {"type": "number"},
        "high": {"type": "number"},
        "log": {"type": "boolean"},
        "step": {"type": "number", "exclusiveMinimum": 0},
        "choices": {"type": "array", "minItems": 1},
        "type": {"enum": ["float", "int", "categorical"]},
        "when": {"type": "object", "additionalProperties": {"type": "array"}},
    },
}


def _hoist_defs(node: Any, defs: dict[str, Any]) -> Any:
    """pydantic nests `$defs` in each model's schema, but `#/$defs/X` resolves from the root: move them there."""
    if isinstance(node, dict):
        for name, sub in node.pop("$defs", {}).items():
            defs[name] = _hoist_defs(sub, defs)
        return {k: _hoist_defs(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_hoist_defs(v, defs) for v in node]
    return node


def config_schema() -> dict[str, Any]:
    study = StudySection.model_json_schema()
    study["properties"]["sampler"] = _component_schema(STUDY_PARTS["sampler"])
    study["properties"]["pruner"] = _component_schema(STUDY_PARTS["pruner"])
    defs: dict[str, Any] = {}
    schema = _hoist_defs(
        {
            "title": "tunekit config",
            "type": "object",
            "additionalProperties": False,
            "required": ["data"],
            "properties": {
                "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
                "seed": {"type": "integer", "minimum": 0},
                **{section: _component_schema(spec) for section, spec in SECTIONS.items()},
                "train": TrainSection.model_json_schema(),
                "study": study,
                "tracking": TrackingSection.model_json_schema(),
                "search": {
                    "type": "object",
                    "additionalProperties": SEARCH_ENTRY,
                    "description": "dotted config keys mapped to {low, high[, log][, step]} or {choices: [...]}",
                },
            },
        },
        defs,
    )
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "$defs": defs}
