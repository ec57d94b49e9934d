"""Where the seed's restored YAML examples are (`../shared/seeds/examples`).

CI clones the repo with `shared/` beside it; a developer's checkout has it in
the same place. `MESHLET_SEED_EXAMPLES` overrides.
"""
from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]


def seed_examples() -> Path:
    """The examples folder; the first candidate that exists (or the first one)."""
    candidates = [
        Path(p) for p in (os.environ.get("MESHLET_SEED_EXAMPLES"),) if p
    ] + [_REPO.parent / "shared" / "seeds" / "examples", Path("/work/shared/seeds/examples")]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return candidates[0]


SEED_EXAMPLES = seed_examples()
