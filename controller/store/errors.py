"""Store errors: one small hierarchy, converted to CLI messages / gRPC status at each boundary.

    StoreError
     ├── NotFound   the object does not exist
     ├── Conflict   resourceVersion mismatch (someone else changed it)
     ├── Gone       a watch asked for a resource version already compacted away: relist
     └── Invalid    the request is refused (missing namespace, bad clusterIP, ...);
                    `problems` lists every reason
"""
from __future__ import annotations


class StoreError(Exception):
    """Base of every store error."""


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    pass


class Gone(StoreError):
    pass


class Invalid(StoreError):
    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        text = self.problems[0] if len(self.problems) == 1 else "\n  ".join(
            [f"{len(self.problems)} problems:"] + self.problems)
        super().__init__(text)
