"""Two ways to read install values: concretely (`meshlet install`) or as helm template text (the chart).

The manifest builder (`install_manifests`) asks a `Scope` for every value that
depends on the values or the release. `ValuesScope` answers with the value
itself; `TemplateScope` answers with an opaque token and remembers the helm
expression for it, and `TemplateScope.render()` turns the builder's YAML into
a chart template by replacing each token with `{{ expr }}`. Because both run
the same builder, `meshlet install` and `helm template` render the same
objects (tests/kube/test_install_helm.py compares them).
"""
from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import yaml

from .install_values import InstallError, get_path


class Scope(Protocol):
    def text(self, path: str, *, b64: bool = False) -> str:
        """A string value (`.Values.<path>`), base64-encoded when `b64`; required values must be set."""
        ...

    def number(self, path: str) -> int: ...

    def block(self, path: str) -> Any:
        """A map value rendered as YAML (resources)."""
        ...

    def namespace(self) -> str:
        """`.Release.Namespace`."""
        ...

    def version(self) -> str:
        """`.Chart.AppVersion`: the meshlet version."""
        ...

    def image(self) -> str:
        """`<image.name>:<image.tag or version>`."""
        ...

    def prefixed(self, prefix: str, suffix: str) -> str:
        """`<prefix><namespace><suffix>`: names of cluster-scoped objects, unique per install namespace."""
        ...


def required_message(path: str) -> str:
    return f"{path} is required (meshlet install generates it; see values.yaml)"


@dataclass(frozen=True)
class ValuesScope:
    values: Mapping[str, Any]
    release_namespace: str
    app_version: str
    required: tuple[str, ...] = ()

    def text(self, path: str, *, b64: bool = False) -> str:
        value = get_path(self.values, path)
        if not isinstance(value, str):
            raise InstallError(f"value {path!r} must be a string, got {value!r}")
        if path in self.required and not value:
            raise InstallError(required_message(path))
        return base64.b64encode(value.encode()).decode() if b64 else value

    def number(self, path: str) -> int:
        value = get_path(self.values, path)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InstallError(f"value {path!r} must be an integer, got {value!r}")
        return value

    def block(self, path: str) -> Any:
        return get_path(self.values, path)

    def namespace(self) -> str:
        return self.release_namespace

    def version(self) -> str:
        return self.app_version

    def image(self) -> str:
        return f"{self.text('image.name')}:{self.text('image.tag') or self.app_version}"

    def prefixed(self, prefix: str, suffix: str) -> str:
        return f"{prefix}{self.release_namespace}{suffix}"


_TOKEN = re.compile(r"'?@@T(\d+)@@'?")
_BLOCK_LINE = re.compile(r"^(?P<indent> *)(?P<key>[^ ].*?): '?@@T(?P<n>\d+)@@'?$")


@dataclass
class TemplateScope:
    required: tuple[str, ...] = ()
    _exprs: list[tuple[str, str]] = field(default_factory=list)
    """(kind, expression) per token: kind "quote" (a string), "raw" (a number), "block" (a map)."""

    def _token(self, kind: str, expr: str) -> str:
        self._exprs.append((kind, expr))
        return f"@@T{len(self._exprs) - 1}@@"

    def _ref(self, path: str) -> str:
        ref = f".Values.{path}"
        if path in self.required:
            ref = f"required {_go_string(required_message(path))} {ref}"
        return ref

    def text(self, path: str, *, b64: bool = False) -> str:
        return self._token("quote", self._ref(path) + (" | b64enc" if b64 else ""))

    def number(self, path: str) -> Any:
        return self._token("raw", f".Values.{path}")

    def block(self, path: str) -> Any:
        return self._token("block", f".Values.{path}")

    def namespace(self) -> str:
        return self._token("quote", ".Release.Namespace")

    def version(self) -> str:
        return self._token("quote", ".Chart.AppVersion")

    def image(self) -> str:
        return self._token("quote", 'printf "%s:%s" .Values.image.name (.Values.image.tag | default .Chart.AppVersion)')

    def prefixed(self, prefix: str, suffix: str) -> str:
        return self._token("quote", f"printf \"%s%s%s\" {_go_string(prefix)} .Release.Namespace {_go_string(suffix)}")

    def render(self, docs: list[dict[str, Any]]) -> str:
        """The chart template text for `docs` (built with this scope's tokens)."""
        text = "---\n".join(yaml.safe_dump(d, sort_keys=False, default_flow_style=False, width=10_000) for d in docs)
        out: list[str] = []
        for line in text.splitlines():
            m = _BLOCK_LINE.match(line)
            if m and self._exprs[int(m["n"])][0] == "block":
                indent = len(m["indent"]) + 2
                out.append(f"{m['indent']}{m['key']}:{{{{- toYaml {self._exprs[int(m['n'])][1]} | nindent {indent} }}}}")
                continue
            out.append(_TOKEN.sub(self._replace, line))
        return "\n".join(out) + "\n"

    def _replace(self, m: re.Match[str]) -> str:
        kind, expr = self._exprs[int(m[1])]
        if kind == "block":
            raise InstallError(f"internal: map value {expr} used outside a mapping value")
        return f"{{{{ {expr} }}}}" if kind == "raw" else f"{{{{ {expr} | quote }}}}"


def _go_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
