"""The conversion report, for people (text) and for programs (JSON)."""

from __future__ import annotations

import json
from typing import Any

from stratus.convert.report import Conversion


def summary(conversions: list[Conversion]) -> dict[str, int]:
    return {
        "documents": len(conversions),
        "converted": sum(1 for c in conversions if c.error is None and c.resources),
        "failed": sum(1 for c in conversions if c.error is not None),
        "resources": sum(len(c.resources) for c in conversions),
        "notes": sum(len(c.notes) for c in conversions),
    }


def as_json(conversions: list[Conversion], dry_run: dict[str, str] | None = None) -> str:
    """The whole report; dry_run maps a resource's `Kind/namespace/name` to its rejection."""
    body: dict[str, Any] = {
        "summary": summary(conversions),
        "conversions": [c.as_dict() for c in conversions],
    }
    if dry_run is not None:
        body["dryRunFailures"] = dry_run
    return json.dumps(body, indent=2, sort_keys=False)


def resource_key(resource: dict[str, Any]) -> str:
    metadata = resource.get("metadata") or {}
    return f"{resource.get('kind')}/{metadata.get('namespace') or '-'}/{metadata.get('name')}"


def as_text(conversions: list[Conversion], dry_run: dict[str, str] | None = None) -> str:
    lines: list[str] = []
    for c in conversions:
        title = f"{c.source}: {c.kind or 'unknown'} {c.name}".rstrip()
        if c.error is not None:
            lines.append(f"{title}: ERROR {c.error}")
            continue
        made = ", ".join(resource_key(r).replace("/-/", "/") for r in c.resources) or "nothing"
        lines.append(f"{title} -> {made}")
        for n in c.notes:
            lines.append(f"  {n.kind:8} {n.field}: {n.reason}")
            if n.todo:
                lines.append(f"           todo: {n.todo}")
        for r in c.resources:
            rejected = (dry_run or {}).get(resource_key(r))
            if rejected:
                lines.append(f"  DRY RUN FAILED {resource_key(r)}: {rejected}")
    s = summary(conversions)
    lines.append(
        f"{s['documents']} documents: {s['converted']} converted into {s['resources']} "
        f"resources, {s['failed']} failed, {s['notes']} notes"
    )
    if dry_run is not None:
        lines.append(f"server-side dry run: {len(dry_run)} of {s['resources']} resources rejected")
    return "\n".join(lines) + "\n"
