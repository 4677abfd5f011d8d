"""Benchmark items and datasets: one question about one image or one audio clip, whatever set it
comes from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ItemKind = Literal["yes_no", "closed", "open", "safety"]
ITEM_KINDS: tuple[str, ...] = ("yes_no", "closed", "open", "safety")


class DatasetError(ValueError):
    """A benchmark folder or archive that cannot be read: missing file, malformed line, unsafe path."""


@dataclass(frozen=True)
class Item:
    """One benchmark question.

    ``image`` is relative to the dataset root; an audio item has ``audio`` (its clip, relative
    to the root) instead and ``image`` empty. ``label`` is the expected answer (``yes``/``no``
    for ``yes_no``, a word for ``closed``, a reference answer for ``open``) or ``None`` where the
    set has none (``safety``: the judge decides from the answer alone). ``extra`` holds what a
    judge or report may need (LLaVA-Bench context caption, MM-SafetyBench key phrase, …).
    """

    key: str
    prompt: str
    image: str
    label: str | None
    category: str
    kind: ItemKind
    extra: dict[str, Any] = field(default_factory=dict, hash=False)
    audio: str = ""

    @property
    def media(self) -> str:
        """The item's media file, relative to the dataset root: its clip or its image."""
        return self.audio or self.image

    @property
    def modality(self) -> str:
        return "audio" if self.audio else "image"


@dataclass
class Dataset:
    name: str
    root: Path
    items: list[Item]

    def __len__(self) -> int:
        return len(self.items)

    def media_path(self, item: Item) -> Path:
        return self.root / item.media

    def media_bytes(self, item: Item) -> bytes:
        return self.media_path(item).read_bytes()

    def categories(self) -> list[str]:
        """Categories in first-appearance order."""
        return list(dict.fromkeys(item.category for item in self.items))
