"""Generates the CustomResourceDefinitions from the pydantic models: structural OpenAPI v3
schemas (no $ref, no null types, int-or-string quantities), the models' rules as CEL
x-kubernetes-validations, the status subresource, printer columns, short names and categories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from stratus.api.common import GROUP, INT_OR_STRING, VERSION
from stratus.api.resources import RESOURCE_TYPES, ResourceType

Schema = dict[str, Any]
# JSON-Schema keywords pydantic writes that a structural schema does not take.
_DROPPED = {"title", "additionalProperties", "$defs", "discriminator"}


def _resolve(schema: Schema, defs: dict[str, Schema]) -> Schema:
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return _resolve(merged, defs)
    return schema


def structural(schema: Schema, defs: dict[str, Schema]) -> Schema:
    """Turn one pydantic JSON schema node into a structural OpenAPI v3 schema node."""
    schema = _resolve(schema, defs)
    if INT_OR_STRING in schema:
        # The pattern holds for strings only; CEL keeps integers non-negative too.
        out: Schema = {
            "x-kubernetes-int-or-string": True,
            "x-kubernetes-validations": [
                {"rule": "type(self) == string || self >= 0", "message": "must not be negative"}
            ],
        }
        for key in ("description", "pattern", "default"):
            if schema.get(key) is not None:
                out[key] = schema[key]
        return _ordered(out)
    if "anyOf" in schema:
        # Optional[X] is anyOf [X, null]: a field that may be omitted, which is X in OpenAPI.
        options = [o for o in schema["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express union {schema['anyOf']} structurally")
        outer = {k: v for k, v in schema.items() if k != "anyOf"}
        resolved = _resolve(options[0], defs)
        # The field's own description and default win over the referenced type's.
        return structural({**resolved, **outer}, defs)

    out = {k: v for k, v in schema.items() if k not in _DROPPED}
    if out.get("default", 0) is None:
        del out["default"]
    if "const" in out:
        out["enum"] = [out.pop("const")]
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return _ordered(_nested(schema, out, defs))


def _nested(schema: Schema, out: Schema, defs: dict[str, Schema]) -> Schema:
    """The keywords that hold schemas of their own: properties, items, additionalProperties."""
    additional = schema.get("additionalProperties")
    if additional is True or (
        schema.get("type") == "object" and additional is None and "properties" not in schema
    ):
        # Models that keep unknown fields, and free-form objects (a partial PodSpec).
        out["x-kubernetes-preserve-unknown-fields"] = True
    elif isinstance(additional, dict):
        out["additionalProperties"] = structural(additional, defs)

    if out.get("properties"):
        out["properties"] = {k: structural(v, defs) for k, v in out["properties"].items()}
    else:
        out.pop("properties", None)
    if "items" in out:
        out["items"] = structural(out["items"], defs)
    if out.get("type") == "object" or "properties" in out:
        out["type"] = "object"
    return out


def _ordered(schema: Schema) -> Schema:
    """Description and type first, whitespace of docstrings folded: the CRD is read by people."""
    if "description" in schema:
        schema["description"] = " ".join(schema["description"].split())
    head: Schema = {k: schema[k] for k in ("description", "type") if k in schema}
    return {**head, **{k: v for k, v in schema.items() if k not in head}}


def openapi_schema(rtype: ResourceType) -> Schema:
    spec = rtype.spec.model_json_schema(by_alias=True, mode="validation")
    status = rtype.status.model_json_schema(by_alias=True, mode="serialization")
    status_schema = structural(status, status.get("$defs", {}))
    # The operator owns status; nothing it writes may be pruned, including what a newer
    # operator adds before this schema learns of it.
    status_schema["x-kubernetes-preserve-unknown-fields"] = True
    root: Schema = {
        "type": "object",
        "description": rtype.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "stratus.dev/v1alpha1"},
            "kind": {"type": "string", "description": rtype.kind},
            # The operator names its children after the resource, so the name is bounded.
            "metadata": {
                "type": "object",
                "properties": {"name": {"type": "string", "maxLength": rtype.max_name_length}},
            },
            "spec": structural(spec, spec.get("$defs", {})),
            "status": status_schema,
        },
    }
    if rtype.rules:
        # At the root, CEL may read metadata.name (and generateName), not the rest of metadata.
        root["x-kubernetes-validations"] = [rule.crd() for rule in rtype.rules]
    return root


def crd(rtype: ResourceType) -> Schema:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": rtype.crd_name, "labels": {"app.kubernetes.io/part-of": "stratus"}},
        "spec": {
            "group": GROUP,
            "scope": rtype.scope,
            "names": {
                "kind": rtype.kind,
                "listKind": f"{rtype.kind}List",
                "plural": rtype.plural,
                "singular": rtype.singular,
                "shortNames": list(rtype.short_names),
                "categories": list(rtype.categories),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [c.crd() for c in rtype.columns],
                    "schema": {"openAPIV3Schema": openapi_schema(rtype)},
                }
            ],
        },
    }


def render(rtype: ResourceType) -> str:
    header = "# Generated from the models in operator/stratus/api by `make crds`. Do not edit.\n"
    return header + yaml.safe_dump(crd(rtype), sort_keys=False, width=100)


def file_name(rtype: ResourceType) -> str:
    return f"{rtype.crd_name}.yaml"


PEERING_FILE = "kopf-peerings.yaml"


def peering_crds() -> list[Schema]:
    """kopf's peering resources, where operator replicas elect the one that acts."""
    crds = []
    for kind, scope in (("ClusterKopfPeering", "Cluster"), ("KopfPeering", "Namespaced")):
        plural = kind.lower() + "s"
        crds.append(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {
                    "name": f"{plural}.kopf.dev",
                    "labels": {"app.kubernetes.io/part-of": "stratus"},
                },
                "spec": {
                    "group": "kopf.dev",
                    "scope": scope,
                    "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
                    "versions": [
                        {
                            "name": "v1",
                            "served": True,
                            "storage": True,
                            "schema": {
                                "openAPIV3Schema": {
                                    "type": "object",
                                    "properties": {
                                        "status": {
                                            "type": "object",
                                            "x-kubernetes-preserve-unknown-fields": True,
                                        }
                                    },
                                }
                            },
                        }
                    ],
                },
            }
        )
    return crds


def render_peering() -> str:
    header = "# kopf's peering CRDs (high availability), written by `make crds`. Do not edit.\n"
    return header + yaml.safe_dump_all(peering_crds(), sort_keys=False, width=100)


def write_all(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for rtype in RESOURCE_TYPES:
        path = directory / file_name(rtype)
        path.write_text(render(rtype))
        written.append(path)
    peering = directory / PEERING_FILE
    peering.write_text(render_peering())
    written.append(peering)
    return written
