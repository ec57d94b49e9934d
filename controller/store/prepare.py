"""What every store backend does to objects before writing any: validate and default them all."""
from __future__ import annotations

from collections.abc import Sequence

from meshlet.controller.model import ConversionError, Registry, Resource, UnknownKind, default_resource, to_obj
from meshlet.controller.store.errors import Invalid


def prepare(registry: Registry, resources: Sequence[Resource]) -> list[Resource]:
    """Each object defaulted and checked; Invalid lists every problem, nothing is written."""
    problems: list[str] = []
    out: list[Resource] = []
    for i, resource in enumerate(resources):
        if not isinstance(resource, Resource):
            problems.append(f"item {i + 1}: expected a Resource, got {type(resource).__name__}")
            continue
        try:
            info = registry.for_kind(resource.kind)
            if info.cls is not type(resource):
                raise UnknownKind(f"kind {resource.kind} is not registered with this store")
            # a round trip through the converter runs every check the loader runs
            out.append(registry.decode(to_obj(default_resource(resource))))
        except (ConversionError, UnknownKind) as e:
            problems.append(f"{resource.kind.lower()}/{resource.metadata.name}: {e}")
    if problems:
        raise Invalid(problems)
    return out
