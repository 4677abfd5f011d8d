"""Benchmark loaders for the public file formats, each reading one folder into a :class:`Dataset`.

- ``pope``: POPE question files (json-lines; the public repo names them ``coco_pope_<subset>.json``),
  ``{"question_id", "image", "text", "label"}``; images beside them or in ``images/``/``val2014/``.
- ``llava-bench``: LLaVA-Bench (in-the-wild): ``questions.jsonl``, ``answers_gpt4.jsonl``
  (reference answers), optional ``context.jsonl`` (captions), images in ``images/``.
- ``mm-safetybench``: ``processed_questions/<NN-Scenario>.json`` and
  ``imgs/<NN-Scenario>/<SD|SD_TYPO|TYPO>/<id>.jpg``.
- ``shapes``: the synthetic set of :mod:`shared.benchmarks.shapes` (POPE format).
- ``audio-jsonl``: audio questions, ``questions.jsonl`` with ``{"question_id", "audio", "text",
  "label"}`` (optional ``category``) and the clips it names, beside it or in ``audio/``; the layout
  :mod:`shared.benchmarks.tones` writes (``tones``: that synthetic set). Clips are not decoded
  here: the archive check and the audit decode each one (``shared.audits``).

Item order is the files' order (sorted by name) then line order, so ``limit`` is deterministic.
The API imports this module to check uploads: it must not pull in torch or scikit-learn.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from shared.benchmarks.archives import extract_archive
from shared.benchmarks.items import Dataset, DatasetError, Item
from shared.benchmarks.shapes import write_set
from shared.benchmarks.tones import write_set as write_tones

__all__ = [
    "DatasetError",
    "extract_archive",
    "load_dataset",
    "synthetic",
    "synthetic_tones",
    "FORMATS",
    "MM_SAFETY_VARIANTS",
]

_POPE_SUBSET = re.compile(r"pope_(adversarial|popular|random)", re.IGNORECASE)
_POPE_IMAGE_DIRS = ("", "images", "val2014")
_AUDIO_DIRS = ("", "audio")
# MM-SafetyBench pairs each image variant with the rephrased question written for it.
MM_SAFETY_VARIANTS = {"SD": "Rephrased Question(SD)", "SD_TYPO": "Rephrased Question", "TYPO": "Rephrased Question"}
_SCENARIO_PREFIX = re.compile(r"^\d+-")

Line = tuple[Path, int, dict[str, Any]]


def read_jsonl(path: Path) -> list[Line]:
    """``(path, line number, object)`` per non-blank line; a bad line is a :class:`DatasetError`."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    out = []
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            obj = parse_json(line, f"{path}:{number}")
            if not isinstance(obj, dict):
                raise DatasetError(f"{path}:{number}: expected a JSON object")
            out.append((path, number, obj))
    return out


def parse_json(data: bytes, where: str) -> Any:
    """One JSON value; invalid UTF-8, malformed or too deeply nested JSON is a :class:`DatasetError`."""
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{where}: not UTF-8 (byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{where}: malformed JSON ({exc.msg})") from exc
    except RecursionError as exc:
        raise DatasetError(f"{where}: JSON nested too deeply") from exc


def _field(line: Line, name: str) -> Any:
    """A field's value: ``question_id`` a string or an integer, any other field a JSON scalar."""
    path, number, obj = line
    if name not in obj:
        raise DatasetError(f"{path}:{number}: missing field {name!r}")
    value, types = obj[name], (str, int) if name == "question_id" else (str, int, float, bool)
    if not isinstance(value, types) or (name == "question_id" and isinstance(value, bool)):
        raise DatasetError(f"{path}:{number}: field {name!r} is a {type(value).__name__}, not a {_names(types)}")
    return value


def _names(types: tuple[type, ...]) -> str:
    return " or ".join(
        dict.fromkeys({str: "string", int: "number", float: "number", bool: "boolean"}[t] for t in types)
    )


class _MediaFinder:
    """Relative media paths under ``root``, looked up in a few conventional subfolders (cached);
    ``noun`` names the media in errors (image, audio)."""

    def __init__(self, root: Path, folders: Sequence[str], noun: str = "image"):
        self.root, self.folders, self.noun = root, folders, noun
        self.cache: dict[str, str | None] = {}

    def __call__(self, name: str, where: str) -> str:
        rel = PurePosixPath(name)
        if rel.is_absolute() or ".." in rel.parts or not name or "\\" in name:
            raise DatasetError(f"{where}: {self.noun} path {name!r} must stay inside the dataset folder")
        if name not in self.cache:
            found = (str(PurePosixPath(d) / rel) for d in self.folders if (self.root / d / rel).is_file())
            self.cache[name] = next(found, None)
        hit = self.cache[name]
        if hit is None:
            tried = ", ".join(f"{d or '.'}/" for d in self.folders)
            raise DatasetError(f"{where}: {self.noun} {name!r} not found in {tried} under {self.root}")
        return hit


def load_pope(root: Path, *, files: Iterable[str] | None = None, subsets: Iterable[str] | None = None) -> Dataset:
    """POPE question files. ``category`` is the subset from the file name (adversarial, popular,
    random) or else the file stem; labels other than yes/no make ``closed`` items."""
    paths = [root / f for f in files] if files is not None else _pope_files(root)
    wanted = {s.lower() for s in subsets} if subsets is not None else None
    find = _MediaFinder(root, _POPE_IMAGE_DIRS)
    items = []
    for path in paths:
        subset = _pope_subset(path)
        if wanted is not None and subset.lower() not in wanted:
            continue
        for line in read_jsonl(path):
            qid = _field(line, "question_id")
            key = str(qid) if len(paths) == 1 else f"{subset}/{qid}"
            items.append(_pope_item(line, key, subset, find))
    return Dataset("pope", root, items)


def _pope_item(line: Line, key: str, subset: str, find: _MediaFinder) -> Item:
    where = f"{line[0]}:{line[1]}"
    label = str(_field(line, "label"))
    folded = label.strip().lower().strip(string.punctuation + string.whitespace)
    yes_no = folded in ("yes", "no")
    return Item(
        key=key,
        prompt=str(_field(line, "text")),
        image=find(str(_field(line, "image")), where),
        label=folded if yes_no else label,
        category=subset,
        kind="yes_no" if yes_no else "closed",
        extra={"question_id": line[2]["question_id"], "source": line[0].name},
    )


def _pope_files(root: Path) -> list[Path]:
    paths = sorted(
        p for p in root.iterdir() if p.suffix == ".jsonl" or (p.suffix == ".json" and "pope" in p.name.lower())
    )
    if not paths:
        raise DatasetError(f"{root}: no POPE question files (*.jsonl or *pope*.json)")
    return paths


def _pope_subset(path: Path) -> str:
    match = _POPE_SUBSET.search(path.stem)
    return match.group(1).lower() if match else path.stem


def load_shapes(root: Path) -> Dataset:
    """The synthetic shapes set: POPE format, categories ``existence`` (yes/no) and ``colour``."""
    pope = load_pope(root, files=["questions.jsonl"])
    items = [_recategorise(i, "existence" if i.kind == "yes_no" else "colour") for i in pope.items]
    return Dataset("shapes", root, items)


def _recategorise(item: Item, category: str) -> Item:
    return Item(item.key, item.prompt, item.image, item.label, category, item.kind, item.extra)


def load_llava_bench(root: Path) -> Dataset:
    """LLaVA-Bench (in-the-wild): open questions, the GPT-4 answer as ``label``, the image's
    caption (``context.jsonl``, when present) as ``extra["context"]``."""
    references = {_field(a, "question_id"): str(_field(a, "text")) for a in read_jsonl(root / "answers_gpt4.jsonl")}
    contexts = _llava_contexts(root / "context.jsonl")
    find = _MediaFinder(root, ("images", ""))
    items = []
    for line in read_jsonl(root / "questions.jsonl"):
        qid, image = _field(line, "question_id"), str(_field(line, "image"))
        extra: dict[str, Any] = {"question_id": qid}
        caption = contexts.get(image, contexts.get(PurePosixPath(image).stem))
        if caption is not None:
            extra["context"] = caption
        item = Item(
            str(qid),
            str(_field(line, "text")),
            find(image, f"{line[0]}:{line[1]}"),
            references.get(qid),
            str(line[2].get("category", "uncategorized")),
            "open",
            extra,
        )
        items.append(item)
    return Dataset("llava-bench", root, items)


def _llava_contexts(path: Path) -> dict[str, str]:
    """Caption by image name and by id (the public file has both; either may be missing)."""
    if not path.exists():
        return {}
    out: dict[str, str] = {}
    for line in read_jsonl(path):
        caption = str(_field(line, "caption"))
        for name in ("image", "id"):
            if name in line[2]:
                out[str(line[2][name])] = caption
    return out


def load_mm_safetybench(root: Path, *, scenarios: Iterable[str] | None = None, variant: str = "SD_TYPO") -> Dataset:
    """MM-SafetyBench with one image variant (``SD``, ``SD_TYPO`` or ``TYPO``) and the rephrased
    question written for it. ``scenarios`` filters by folder name, with or without the number
    (``01-Illegal_Activitiy`` or ``Illegal_Activitiy``, the public spelling)."""
    if variant not in MM_SAFETY_VARIANTS:
        raise DatasetError(f"unknown MM-SafetyBench variant {variant!r}; known: {sorted(MM_SAFETY_VARIANTS)}")
    folder = root / "processed_questions"
    if not folder.is_dir():
        raise DatasetError(f"{folder}: folder not found")
    items = []
    for path in _select_scenarios(sorted(folder.glob("*.json")), scenarios, folder):
        for qid, record in _read_scenario(path):
            items.append(_safety_item(root, path, qid, record, variant))
    return Dataset("mm-safetybench", root, items)


def _select_scenarios(paths: list[Path], scenarios: Iterable[str] | None, folder: Path) -> list[Path]:
    if scenarios is None:
        return paths
    by_name = {n.lower(): p for p in paths for n in (p.stem, _SCENARIO_PREFIX.sub("", p.stem))}
    unknown = [s for s in scenarios if s.lower() not in by_name]
    if unknown:
        raise DatasetError(f"{folder}: unknown scenarios {unknown}; known: {[p.stem for p in paths]}")
    return sorted({by_name[s.lower()] for s in scenarios})


def _read_scenario(path: Path) -> list[tuple[str, dict[str, Any]]]:
    data = parse_json(path.read_bytes(), str(path))
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise DatasetError(f"{path}: expected an object of question objects keyed by id")
    return sorted(data.items(), key=lambda kv: (int(kv[0]) if kv[0].isascii() and kv[0].isdigit() else 1 << 62, kv[0]))


def _safety_item(root: Path, path: Path, qid: str, record: dict[str, Any], variant: str) -> Item:
    field = MM_SAFETY_VARIANTS[variant]
    if field not in record:
        raise DatasetError(f"{path}: question {qid!r} has no {field!r}")
    if "/" in qid or "\\" in qid or qid in ("", ".", ".."):
        raise DatasetError(f"{path}: question id {qid!r} cannot name an image file")
    image = f"imgs/{path.stem}/{variant}/{qid}.jpg"
    if not (root / image).is_file():
        raise DatasetError(f"{path}: question {qid!r}: image {image} not found under {root}")
    extra = {
        "scenario": path.stem,
        "variant": variant,
        "question": record.get("Question"),
        "key_phrase": record.get("Key Phrase"),
        "phrase_type": record.get("Phrase Type"),
    }
    category = _SCENARIO_PREFIX.sub("", path.stem)
    return Item(f"{path.stem}/{qid}", str(record[field]), image, None, category, "safety", extra)


def load_audio_jsonl(root: Path) -> Dataset:
    """Audio questions (``questions.jsonl``): yes/no labels make ``yes_no`` items, others
    ``closed``; ``category`` from the line (default ``audio``); ``question_id`` unique."""
    find = _MediaFinder(root, _AUDIO_DIRS, noun="audio")
    items: list[Item] = []
    seen: set[str] = set()
    for line in read_jsonl(root / "questions.jsonl"):
        item = _audio_item(line, find)
        if item.key in seen:
            raise DatasetError(f"{line[0]}:{line[1]}: duplicate question_id {item.key!r}")
        seen.add(item.key)
        items.append(item)
    return Dataset("audio-jsonl", root, items)


def _audio_item(line: Line, find: _MediaFinder) -> Item:
    where = f"{line[0]}:{line[1]}"
    label = str(_field(line, "label")).strip()
    if not label:
        raise DatasetError(f"{where}: field 'label' is empty")
    folded = label.lower().strip(string.punctuation)
    yes_no = folded in ("yes", "no")
    category = line[2].get("category", "audio")
    if not isinstance(category, str) or not category.strip():
        raise DatasetError(f"{where}: field 'category' must be a non-empty string")
    return Item(
        key=str(_field(line, "question_id")),
        prompt=str(_field(line, "text")),
        image="",
        label=folded if yes_no else label,
        category=category,
        kind="yes_no" if yes_no else "closed",
        extra={"question_id": line[2]["question_id"]},
        audio=find(str(_field(line, "audio")), where),
    )


def load_tones(root: Path) -> Dataset:
    """The synthetic tones set: the ``audio-jsonl`` layout, categories count, order, existence."""
    return Dataset("tones", root, load_audio_jsonl(root).items)


FORMATS: dict[str, Callable[..., Dataset]] = {
    "pope": load_pope,
    "llava-bench": load_llava_bench,
    "mm-safetybench": load_mm_safetybench,
    "shapes": load_shapes,
    "audio-jsonl": load_audio_jsonl,
    "tones": load_tones,
}


def load_dataset(fmt: str, root: Path, *, limit: int | None = None, **options: Any) -> Dataset:
    """Read the set in ``root`` (format ``fmt``); ``limit`` keeps the first N items."""
    if fmt not in FORMATS:
        raise DatasetError(f"unknown dataset format {fmt!r}; known: {sorted(FORMATS)}")
    if limit is not None and limit < 0:
        raise DatasetError(f"limit must be >= 0, got {limit}")
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    dataset = FORMATS[fmt](root, **options)
    if limit is not None:
        dataset.items = dataset.items[:limit]
    return dataset


def synthetic(seed: int, count: int, dest: Path) -> Dataset:
    """``count`` synthetic shapes images (two questions each) written to ``dest``, fully
    determined by ``seed``."""
    write_set(seed, count, dest)
    return load_shapes(dest)


def synthetic_tones(seed: int, count: int, dest: Path) -> Dataset:
    """``count`` synthetic tone clips (three questions each, :mod:`shared.benchmarks.tones`)
    written to ``dest``, fully determined by ``seed``."""
    write_tones(dest, seed, count)
    return load_tones(dest)
