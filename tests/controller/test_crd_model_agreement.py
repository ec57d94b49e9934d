"""The CRD schemas and the model agree on types: any document a schema admits decodes with the
model's converter (types, required fields, enums, maps), so whatever the API server stores,
meshlet can read. (The other direction, model output fits the schema, is in test_crd_generator.)
"""
from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from meshlet.controller.model import DEFAULT_REGISTRY, ConversionError, from_obj
from meshlet.controller.model.crd import render_crds

PRESERVE = "x-kubernetes-preserve-unknown-fields"
CRDS = {c["spec"]["names"]["kind"]: c for c in render_crds()}


def is_alias(schema: dict[str, Any]) -> bool:
    return schema.get("description", "").startswith("Seed spelling of")


def documents(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values the schema admits (small: short strings and lists, free-form nodes left empty)."""
    if schema.get("x-kubernetes-int-or-string"):
        return st.one_of(st.integers(-5, 70000), st.text(max_size=4))
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    t = schema.get("type")
    if t is None:  # free-form (an adapted seed spelling): not generated
        return st.nothing()
    if t == "string":
        return st.text(max_size=4)
    if t == "integer":
        return st.integers(-5, 70000)
    if t == "number":
        return st.one_of(st.integers(-5, 200), st.floats(-5, 200, allow_nan=False))
    if t == "boolean":
        return st.booleans()
    if t == "array":
        return st.lists(documents(schema["items"]), max_size=2)
    if "properties" in schema:
        props = {k: v for k, v in schema["properties"].items() if not is_alias(v) and v.get("type", "x") is not None}
        required = schema.get("required", [])
        return st.fixed_dictionaries({k: documents(props[k]) for k in required},
                                     optional={k: documents(v) for k, v in props.items() if k not in required})
    if "additionalProperties" in schema:
        digits = "x-kubernetes-validations" in schema
        keys = st.integers(1, 65535).map(str) if digits else st.text(min_size=1, max_size=4)
        return st.dictionaries(keys, documents(schema["additionalProperties"]), max_size=2)
    return st.just({})  # preserve-unknown-fields object


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_every_document_the_schema_admits_decodes(kind: str) -> None:
    schema = CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec_schema = schema["properties"]["spec"]
    info = DEFAULT_REGISTRY.for_kind(kind)

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(documents(spec_schema))
    def decodes(spec: Any) -> None:
        doc = {"apiVersion": info.api_version, "kind": kind, "metadata": {"name": "x"}, "spec": spec}
        try:
            from_obj(info.cls, doc, strict=False)  # types only: validate() hooks are meshlet's own checks
        except ConversionError as e:
            raise AssertionError(f"the {kind} schema admits a document the model cannot read: {e}") from None

    decodes()
