"""Unpack an uploaded benchmark archive (zip, tar, tar.gz/bz2/xz) without trusting its member names.

Every member is checked before anything is written: absolute names, ``..`` components,
drive letters, links and device files are refused. Files are written by this code (not by
``extractall``), so nothing lands outside ``dest`` and no permission bits are taken over.
"""

from __future__ import annotations

import io
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO

from shared.benchmarks.items import DatasetError

MAX_BYTES = 16 * 2**30  # declared uncompressed size; a guard against archive bombs, not a quota
_JUNK = ("__MACOSX",)

# (relative path, is_dir, declared size, opener of the member's bytes)
Member = tuple[PurePosixPath, bool, int, Callable[[], IO[bytes]]]


def extract_archive(data: bytes, dest: Path, *, max_bytes: int = MAX_BYTES) -> Path:
    """Unpack ``data`` into ``dest`` and return the dataset root: the single top-level folder
    if the archive has exactly one (the usual ``set.zip`` → ``set/…``), else ``dest``."""
    try:
        with _open_members(data) as members:
            if sum(size for _, _, size, _ in members) > max_bytes:
                raise DatasetError(f"archive unpacks to more than {max_bytes} bytes")
            dest.mkdir(parents=True, exist_ok=True)
            for rel, is_dir, _, opener in members:
                _write(dest.joinpath(*rel.parts), is_dir, opener)
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile, tarfile.TarError) as exc:
        raise DatasetError(f"cannot unpack archive: {exc}") from exc
    return _root(dest, members)


def _write(target: Path, is_dir: bool, opener: Callable[[], IO[bytes]]) -> None:
    if is_dir:
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with opener() as src, target.open("wb") as out:
        shutil.copyfileobj(src, out)


@contextmanager
def _open_members(data: bytes) -> Iterator[list[Member]]:
    """Every member, checked; the archive stays open while the caller reads them."""
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as zipped:
            yield list(_zip_members(zipped))
        return
    with _open_tar(data) as tarred:
        yield list(_tar_members(tarred))


def _open_tar(data: bytes) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    except tarfile.TarError as exc:
        raise DatasetError(f"not a zip or tar archive: {exc}") from exc


def _zip_members(archive: zipfile.ZipFile) -> Iterator[Member]:
    for info in archive.infolist():
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise DatasetError(f"archive member {info.filename!r} is a link")
        rel = _safe_name(info.filename)
        if rel is not None:
            yield rel, info.is_dir(), info.file_size, partial(archive.open, info)


def _tar_members(archive: tarfile.TarFile) -> Iterator[Member]:
    for info in archive.getmembers():
        if info.issym() or info.islnk():
            raise DatasetError(f"archive member {info.name!r} is a link")
        if not (info.isfile() or info.isdir()):
            raise DatasetError(f"archive member {info.name!r} is not a regular file or folder")
        rel = _safe_name(info.name)
        if rel is not None:
            yield rel, info.isdir(), info.size, partial(_tar_open, archive, info)


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


def _root(dest: Path, members: list[Member]) -> Path:
    tops = {rel.parts[0] for rel, _, _, _ in members}
    if len(tops) == 1:
        (top,) = tops
        if (dest / top).is_dir():
            return dest / top
    return dest
