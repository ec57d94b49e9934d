"""Load manifests: files, directories of *.yaml/*.yml, multi-document, `-` = stdin.

Every problem of a request (bad YAML, unknown kinds, field errors in any
document) is collected into one `ManifestError`, each entry naming the file,
the 1-based document index and the field path.
"""
from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml
from meshlet.controller.model.convert import ConversionError
from meshlet.controller.model.defaults import default_resource
from meshlet.controller.model.kinds import DEFAULT_REGISTRY
from meshlet.controller.model.meta import Resource
from meshlet.controller.model.registry import Registry

_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser is much faster on big manifests


class _Loader(_Base):  # type: ignore[misc,valid-type]
    """Safe loader that refuses duplicate keys (PyYAML would silently keep the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # unhashable: the base class reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {key!r} (first at line {seen[key].start_mark.line + 1})",
                    key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class ManifestProblem:
    source: str
    document: int | None
    """1-based index of the document in its file; None for file-level problems."""
    path: str
    message: str

    def __str__(self) -> str:
        where = self.source
        if self.document is not None:
            where += f": document {self.document}"
        if self.path:
            where += f": {self.path}"
        return f"{where}: {self.message}"


class ManifestError(ValueError):
    """Manifests could not be loaded; `problems` lists every one."""

    def __init__(self, problems: list[ManifestProblem]) -> None:
        self.problems = list(problems)
        lines = [str(p) for p in self.problems]
        head = lines[0] if len(lines) == 1 else f"{len(lines)} problems in manifests:\n  " + "\n  ".join(lines)
        super().__init__(head)


@dataclass(frozen=True)
class Source:
    name: str
    text: str


def expand_paths(paths: list[str], stdin: IO[str] | None = None) -> tuple[list[Source], list[ManifestProblem]]:
    """Read every named file (directories: their *.yaml/*.yml, sorted, not recursive)."""
    sources: list[Source] = []
    problems: list[ManifestProblem] = []
    for raw in paths:
        if raw == "-":
            sources.append(Source("<stdin>", (stdin or sys.stdin).read()))
            continue
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in YAML_SUFFIXES and p.is_file())
            if not files:
                problems.append(ManifestProblem(raw, None, "", "no *.yaml or *.yml files in directory"))
        elif path.exists():
            files = [path]
        else:
            problems.append(ManifestProblem(raw, None, "", "no such file or directory"))
            continue
        for file in files:
            try:
                sources.append(Source(str(file), file.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError) as e:
                problems.append(ManifestProblem(str(file), None, "", f"cannot read: {e}"))
    return sources, problems


def parse_documents(text: str, source: str) -> tuple[list[tuple[int, Any]], list[ManifestProblem]]:
    """(1-based index, data) of each non-empty YAML document, or the parse problem."""
    docs: list[tuple[int, Any]] = []
    index = 0
    try:
        for data in yaml.load_all(io.StringIO(text), Loader=_Loader):
            index += 1
            if data is not None:
                docs.append((index, data))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        what = " ".join(str(x) for x in (e.context, e.problem) if x)
        return docs, [ManifestProblem(source, index + 1, "", f"{where}invalid YAML: {what}")]
    except yaml.YAMLError as e:
        return docs, [ManifestProblem(source, None, "", f"invalid YAML: {e}")]
    return docs, []


def load_text(text: str, source: str = "<string>", *, registry: Registry = DEFAULT_REGISTRY,
              warnings: list[str] | None = None, namespace: str | None = None) -> list[Resource]:
    """Typed, defaulted resources from one YAML text; raises ManifestError (see load_paths)."""
    resources, problems = _load_sources([Source(source, text)], registry, warnings, namespace)
    if problems:
        raise ManifestError(problems)
    return resources


def load_paths(paths: list[str], *, registry: Registry = DEFAULT_REGISTRY, warnings: list[str] | None = None,
               stdin: IO[str] | None = None, namespace: str | None = None) -> list[Resource]:
    """Typed, defaulted resources from files/directories/stdin; raises ManifestError with every problem.

    `namespace` (like `kubectl -n`) is given to namespaced objects without one; an object naming
    another namespace is an error. Alias warnings are appended to `warnings`.
    """
    sources, problems = expand_paths(paths, stdin)
    resources, more = _load_sources(sources, registry, warnings, namespace)
    problems.extend(more)
    if problems:
        raise ManifestError(problems)
    return resources


def _load_sources(sources: list[Source], registry: Registry, warnings: list[str] | None,
                  namespace: str | None = None) -> tuple[list[Resource], list[ManifestProblem]]:
    resources: list[Resource] = []
    problems: list[ManifestProblem] = []
    for src in sources:
        docs, parse_problems = parse_documents(src.text, src.name)
        src_problems: list[ManifestProblem] = []
        for index, data in docs:
            doc_warnings: list[str] = []
            try:
                resource = registry.decode(data, warnings=doc_warnings)
            except ConversionError as e:
                src_problems.extend(ManifestProblem(src.name, index, i.path, i.message) for i in e.issues)
                continue
            if warnings is not None:
                warnings.extend(f"{src.name}: document {index}: {w}" for w in doc_warnings)
            if namespace is not None and resource.namespaced:
                if resource.metadata.namespace is None:
                    resource = resource.with_meta(namespace=namespace)
                elif resource.metadata.namespace != namespace:
                    src_problems.append(ManifestProblem(
                        src.name, index, "metadata.namespace",
                        f"{resource.metadata.namespace!r} does not match the requested namespace {namespace!r}"))
                    continue
            resources.append(default_resource(resource))
        problems.extend(src_problems + parse_problems)  # in document order
    return resources, problems
