"""Writing a robustified model: the student's weights and config, the source's processor files."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

OWN_FILES = {"model.safetensors", "config.json", "generation_config.json", "training_info.json"}


def save_student(student: Any, source: Path, out: Path) -> None:
    """The student's weights and config, and the source's processor files byte for byte (a
    re-saved tokenizer would carry the padding state batched evaluation left on it)."""
    out.mkdir(parents=True, exist_ok=True)
    student.save_pretrained(out)
    for f in source.iterdir():
        if f.is_file() and f.name not in OWN_FILES:
            shutil.copyfile(f, out / f.name)
    for f in out.iterdir():
        f.chmod(0o644)  # the weights are written 0600; a package's files are world-readable
