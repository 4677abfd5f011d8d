"""Unpack an uploaded benchmark archive (zip, tar, tar.gz/bz2/xz) without trusting it.

Members are read one at a time and written by this code (not by ``extractall``): absolute names,
``..`` components, drive letters, links and device files are refused, and nothing lands outside
``dest``. The caps of :class:`Limits` hold while the bytes are written — the bytes actually
decompressed, never the sizes the headers declare — so a bomb stops at the cap, memory stays at
one chunk, and a refused archive leaves nothing behind (``dest`` is removed).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO, Any

from shared.benchmarks.items import DatasetError

_JUNK = ("__MACOSX",)
_CHUNK = 2**20
JSON_SUFFIXES = (".json", ".jsonl")
# what each container starts with; tar is told by its "ustar" magic at offset 257
_COMPRESSED: dict[bytes, tuple[str, Callable[[IO[bytes]], Any]]] = {
    b"\x1f\x8b": ("gzip", lambda fh: gzip.GzipFile(fileobj=fh, mode="rb")),
    b"BZh": ("bzip2", bz2.BZ2File),
    b"\xfd7zXZ\x00": ("xz", lzma.LZMAFile),
}
_ZIP = (b"PK\x03\x04", b"PK\x05\x06")
HEAD_BYTES = 262  # enough of the start of a file to tell its kind


@dataclass(frozen=True)
class Limits:
    """What one archive may unpack to. The loaders read ``.json``/``.jsonl`` files whole, so their
    size and line length are capped here, while they are written."""

    max_bytes: int = 2 * 2**30  # every member's bytes together, as decompressed
    max_members: int = 100_000  # files and folders
    max_line_bytes: int = 2**20  # one line of a .json/.jsonl member
    max_json_bytes: int = 16 * 2**20  # one .json/.jsonl member


# (relative path or None for a skipped entry, is_dir, opener of the member's bytes)
Member = tuple[PurePosixPath | None, bool, Callable[[], IO[bytes]]]


def archive_kind(head: bytes) -> str | None:
    """``zip``, ``tar`` or the compression of a tar, told by the first :data:`HEAD_BYTES` bytes
    (``None``: none of these)."""
    if head.startswith(_ZIP):
        return "zip"
    if head[257:262] == b"ustar":
        return "tar"
    return next((name for magic, (name, _) in _COMPRESSED.items() if head.startswith(magic)), None)


def extract_archive(source: bytes | Path, dest: Path, limits: Limits = Limits()) -> Path:
    """Unpack ``source`` (the archive's bytes or its file) into ``dest`` and return the dataset
    root: the single top-level folder if the archive has exactly one (``set.zip`` → ``set/…``),
    else ``dest``. ``DatasetError`` names what is wrong; ``dest`` is then gone."""
    created = not dest.exists()
    try:
        with ExitStack() as stack:
            fh = stack.enter_context(_open_source(source))
            tops = _extract(stack.enter_context(_members(fh, limits)), dest, limits)
    except (OSError, EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile, tarfile.TarError) as exc:
        _discard(dest, created)
        raise DatasetError(f"cannot unpack archive: {exc}") from exc
    except DatasetError:
        _discard(dest, created)
        raise
    return _root(dest, tops)


def _open_source(source: bytes | Path) -> IO[bytes]:
    return source.open("rb") if isinstance(source, Path) else io.BytesIO(source)  # noqa: SIM115 (the caller closes it)


def _discard(dest: Path, created: bool) -> None:
    if created:
        shutil.rmtree(dest, ignore_errors=True)


def _extract(members: Iterator[Member], dest: Path, limits: Limits) -> set[str]:
    budget = _Budget(limits)
    tops = set()
    for count, (rel, is_dir, opener) in enumerate(members, start=1):
        if count > limits.max_members:
            raise DatasetError(f"archive has more than {limits.max_members} members (the limit)")
        if rel is None:
            continue
        tops.add(rel.parts[0])
        target = dest.joinpath(*rel.parts)
        if is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with opener() as src, target.open("wb") as out:
            budget.copy(src, out, str(rel))
    return tops


class _Budget:
    """Counts the bytes written (all members together) and checks JSON members' lines as they pass."""

    def __init__(self, limits: Limits):
        self.limits, self.written = limits, 0

    def copy(self, src: IO[bytes], out: IO[bytes], name: str) -> None:
        is_json, size, line = name.lower().endswith(JSON_SUFFIXES), 0, 0
        while chunk := src.read(_CHUNK):
            self.written += len(chunk)
            if self.written > self.limits.max_bytes:
                raise DatasetError(f"archive unpacks to more than {self.limits.max_bytes} bytes (the limit)")
            size += len(chunk)
            if is_json:
                line = self._check_json(chunk, name, size, line)
            out.write(chunk)

    def _check_json(self, chunk: bytes, name: str, size: int, line: int) -> int:
        """The length of the line still open after ``chunk`` (``line``: the one open before it)."""
        if size > self.limits.max_json_bytes:
            raise DatasetError(f"{name}: over {self.limits.max_json_bytes} bytes (the limit for a JSON file)")
        parts = chunk.split(b"\n")
        longest = max([line + len(parts[0]), *(len(p) for p in parts[1:])])
        if longest > self.limits.max_line_bytes:
            raise DatasetError(f"{name}: a line over {self.limits.max_line_bytes} bytes (the limit)")
        return line + len(parts[0]) if len(parts) == 1 else len(parts[-1])


@contextmanager
def _members(fh: IO[bytes], limits: Limits) -> Iterator[Iterator[Member]]:
    """The archive's members, checked one by one as they are reached; the archive stays open while
    the caller reads them."""
    kind = archive_kind(fh.read(HEAD_BYTES))
    fh.seek(0)
    if kind is None:
        raise DatasetError("not a zip or tar archive (by its first bytes)")
    if kind == "zip":
        _check_zip_directory(fh, limits)
        with zipfile.ZipFile(fh) as zipped:
            yield _zip_members(zipped)
        return
    with ExitStack() as stack:
        raw = fh if kind == "tar" else stack.enter_context(_DECOMPRESSORS[kind](fh))
        tarred = stack.enter_context(tarfile.open(fileobj=_Capped(raw, limits), mode="r:"))
        yield _tar_members(tarred)


def _check_zip_directory(fh: IO[bytes], limits: Limits) -> None:
    """Refuse a central directory with more entries than the cap before ``ZipFile`` reads it all
    into memory: by its declared count, and by its size (an entry takes at least 46 bytes, so a
    directory larger than the cap's worth of ordinary entries lies about its count)."""
    end = zipfile._EndRecData(fh)  # type: ignore[attr-defined]  # the stdlib's own reader of the end record
    fh.seek(0)
    if end is None:
        raise DatasetError("not a zip archive: no end of central directory")
    entries, directory = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
    if entries > limits.max_members or directory > limits.max_members * _ZIP_ENTRY_BYTES:
        raise DatasetError(f"archive has more than {limits.max_members} members (the limit)")


_ZIP_ENTRY_BYTES = 1024  # a central-directory entry: 46 bytes + its name and extra fields
_DECOMPRESSORS = dict(_COMPRESSED.values())


class _Capped(io.RawIOBase):
    """A tar's (decompressed) stream for ``tarfile``: a header that asks to read more than a JSON
    file may hold (a pax or long-name header of gigabytes, read whole by ``tarfile``) and reading
    past twice the byte cap (skipped entries, padding) are refused."""

    def __init__(self, raw: IO[bytes], limits: Limits):
        self.raw, self.limits = raw, limits

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > max(self.limits.max_json_bytes, _CHUNK):
            raise DatasetError("a tar header over the size limit")
        self._check(self.raw.tell() + size)
        return self.raw.read(size)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._check(offset)
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def _check(self, position: int) -> None:
        if position > 2 * self.limits.max_bytes:
            raise DatasetError(f"archive unpacks to more than {self.limits.max_bytes} bytes (the limit)")


def _zip_members(archive: zipfile.ZipFile) -> Iterator[Member]:
    for info in archive.infolist():
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DatasetError(f"archive member {info.filename!r} is a link")
        yield _safe_name(info.filename), info.is_dir(), partial(archive.open, info)


def _tar_members(archive: tarfile.TarFile) -> Iterator[Member]:
    while (info := archive.next()) is not None:
        if info.issym() or info.islnk():
            raise DatasetError(f"archive member {info.name!r} is a link")
        if not (info.isfile() or info.isdir()):
            raise DatasetError(f"archive member {info.name!r} is not a regular file or folder")
        yield _safe_name(info.name), info.isdir(), partial(_tar_open, archive, info)
        archive.members.clear()  # type: ignore[attr-defined]  # one member's header in memory at a time


def _tar_open(archive: tarfile.TarFile, info: tarfile.TarInfo) -> IO[bytes]:
    handle = archive.extractfile(info)
    assert handle is not None  # regular files only reach here
    return handle


def _safe_name(name: str) -> PurePosixPath | None:
    """The member's path relative to the archive root, or ``None`` for entries to skip."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (path.parts and ":" in path.parts[0]):
        raise DatasetError(f"archive member {name!r} has an absolute path")
    if ".." in path.parts:
        raise DatasetError(f"archive member {name!r} escapes the destination")
    parts = [p for p in path.parts if p != "."]
    if not parts or parts[0] in _JUNK:
        return None
    return PurePosixPath(*parts)


def _root(dest: Path, tops: set[str]) -> Path:
    if len(tops) == 1:
        (top,) = tops
        if (dest / top).is_dir():
            return dest / top
    dest.mkdir(parents=True, exist_ok=True)
    return dest
