"""Saving and loading the screening indexes: each serialises itself to bytes, the file is written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from soundtrail.atomic import atomic_write_bytes


class IndexFile:
    """Mixin for an index with ``to_bytes()`` and ``from_bytes(data)``: adds ``save(path)`` and ``load(path)``."""

    def save(self, path: str | Path) -> None:
        atomic_write_bytes(Path(path), self.to_bytes())  # type: ignore[attr-defined]

    @classmethod
    def load(cls, path: str | Path) -> Self:
        return cls.from_bytes(Path(path).read_bytes())  # type: ignore[attr-defined]
