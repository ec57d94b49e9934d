"""Generated Helm chart directories: which files are stale, rewriting them, the `--check` CLI.

Both generated charts (`helm/meshlet-crds` from the model, `helm/meshlet-control-plane`
from the install manifests) are a mapping of relative path -> text; a test fails when the
committed directory differs, and `make crds` / `make chart` rewrite it.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def stale(chart_dir: Path, want: Mapping[str, str]) -> list[str]:
    """Files missing, different, or left over under templates/ (empty: up to date)."""
    found = [rel for rel, text in want.items()
             if not (chart_dir / rel).is_file() or (chart_dir / rel).read_text() != text]
    templates = chart_dir / "templates"
    if templates.is_dir():
        found += [f"templates/{p.name}" for p in sorted(templates.iterdir()) if f"templates/{p.name}" not in want]
    return found


def write(chart_dir: Path, want: Mapping[str, str]) -> list[str]:
    """Write what is stale, remove leftovers; returns what changed."""
    changed = stale(chart_dir, want)
    for rel in changed:
        path = chart_dir / rel
        if rel in want:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(want[rel])
        else:
            path.unlink()
    return changed


def check_or_write(chart_dir: Path, want: Mapping[str, str], *, check: bool, make_target: str) -> int:
    """The generators' command line: `--check` lists stale files (exit 1), else rewrites them."""
    if check:
        found = stale(chart_dir, want)
        for rel in found:
            print(f"stale: {chart_dir}/{rel} (run `make {make_target}`)")
        return 1 if found else 0
    for rel in write(chart_dir, want):
        print(f"wrote {chart_dir}/{rel}")
    return 0
