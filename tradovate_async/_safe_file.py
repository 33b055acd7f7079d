"""File operations for a token file in a directory other users may reach.

Every function here runs in a worker thread and is bounded: a FIFO, device or symbolic link
planted at a path is never opened in a way that blocks or follows it, a file is read only up
to a size cap, and files owned by another user are refused rather than trusted. Writes go
through a temporary file and ``os.replace``, which replaces whatever sits at the path (a
planted link included) without touching what it pointed to.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import tempfile
from pathlib import Path
from typing import Final

from ._errors import TokenStoreError

__all__ = [
    "Unusable",
    "check_lock_file",
    "ensure_dir",
    "open_regular",
    "planted_lock_message",
    "read_capped",
    "remove_stale_temporaries",
    "replace_atomically",
    "tighten_mode",
]

logger = logging.getLogger(__name__)

_OPEN_FLAGS: Final = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO at the path opens at once instead of blocking
    | getattr(os, "O_NOFOLLOW", 0)  # a link planted at the path is never followed
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


class Unusable(Exception):
    """The file exists but is not a token file that can be read; the text says why."""


def _euid() -> int:
    return os.geteuid() if hasattr(os, "geteuid") else 0


def open_regular(path: Path) -> tuple[int, os.stat_result]:
    """A read descriptor of ``path``, which must be a regular file of this user's.

    Raises :class:`Unusable` for a link, FIFO, socket or device, ``IsADirectoryError`` for a
    directory (an ``OSError``, like any other unreadable path), and
    :class:`~tradovate_async.TokenStoreError` for a file owned by another user.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Unusable("it is a symbolic link, which is never followed") from None
        if exc.errno == errno.ENXIO:  # a socket, or a device with nothing behind it
            raise Unusable("it is not a regular file") from None
        raise
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(info.st_mode):
            raise Unusable("it is not a regular file (a FIFO, socket or device)")
        if info.st_uid != _euid():
            raise TokenStoreError(
                f"refusing the token file {path}: it is owned by another user "
                f"(uid {info.st_uid}, this process runs as uid {_euid()}), who could have "
                "planted tokens in it or read ours. Remove it, or give it to this user"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def read_capped(fd: int, info: os.stat_result, limit: int) -> bytes:
    """At most ``limit`` bytes, or :class:`Unusable` for a larger file (even one that grows
    while it is read)."""
    if info.st_size > limit:
        raise Unusable(f"it is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = os.read(fd, limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise Unusable(f"it is larger than {limit} bytes")
    return b"".join(chunks)


def tighten_mode(fd: int, info: os.stat_result, path: Path) -> None:
    """Set a file of ours that others may read or write back to 0600, with a WARNING."""
    mode = stat.S_IMODE(info.st_mode)
    if not mode & 0o077:
        return
    try:
        os.fchmod(fd, 0o600)
    except OSError as exc:
        logger.warning(
            "the token file %s has mode %04o (readable by others) and it could not be changed: %s",
            path,
            mode,
            exc.strerror or type(exc).__name__,
        )
    else:
        logger.warning(
            "the token file %s had mode %04o (readable by others); set it to 0600", path, mode
        )


def planted_lock_message(lock_path: Path, what: str) -> str:
    return (
        f"refusing the token file lock {lock_path}: it {what}, which this store never uses "
        "(another user may have planted it). Remove it; the store cannot share tokens safely "
        "until then"
    )


def check_lock_file(lock_path: Path) -> None:
    """Refuse a lock file another user could hold or redirect: a symbolic link (planted to
    make us lock, or truncate, some other file), a non-file, or a file owned by someone else."""
    try:
        info = os.lstat(lock_path)
    except OSError:
        return  # absent (the lock creates it) or unreachable (the lock itself reports it)
    if stat.S_ISLNK(info.st_mode):
        raise TokenStoreError(planted_lock_message(lock_path, "is a symbolic link"))
    if info.st_uid != _euid():
        raise TokenStoreError(
            planted_lock_message(lock_path, f"is owned by another user (uid {info.st_uid})")
        )
    if not stat.S_ISREG(info.st_mode):
        raise TokenStoreError(planted_lock_message(lock_path, "is not a regular file"))


def ensure_dir(directory: Path) -> None:
    """Create ``directory`` and its missing parents, each with mode 0700."""
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for created in reversed(missing):
        try:
            created.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(created, 0o700)  # mkdir's mode is filtered by the umask


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def remove_stale_temporaries(path: Path) -> None:
    """Remove the temporary files of writers killed mid-write.

    Call it only while holding the file lock: every writer holds it.
    """
    prefix = _temporary_prefix(path)
    with contextlib.suppress(OSError):
        for name in os.listdir(path.parent):
            if name.startswith(prefix) and name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    os.unlink(path.parent / name)


def replace_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file (mode 0600), fsync it and move it over ``path``."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=_temporary_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    # Make the rename itself durable; not every platform or filesystem allows it.
    with contextlib.suppress(OSError):
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
