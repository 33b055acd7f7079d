"""Tokens in one JSON file, shared by every process that can reach the file.

Why a file: a user's bots on one machine (or on several machines sharing a volume that supports
``flock``) must share one login, because every login opens a server session (two at most) and
failed logins lock the user out. The file holds many tokens, one per key, in a versioned
envelope::

    {"format": "tradovate-async/tokens", "version": 1, "tokens": {key: record, ...}}

or, with encryption at rest (Fernet, from the ``encrypt`` extra)::

    {"format": "tradovate-async/tokens", "version": 1, "encryption": "fernet",
     "tokens": "<Fernet token of the JSON object above>"}

Design choices, and why:

- Writes go to a temporary file in the same directory, which is fsynced and then moved over
  the old file with ``os.replace``, so a reader (which takes no lock) or a process killed
  mid-write only ever sees the old or the new file, never a torn one.
- One lock file, ``<path>.lock``, locked with ``flock`` through the ``filelock`` library, guards
  the whole token file. The operating system drops the lock of a process that dies, so a crashed
  holder never blocks the others. ``lock(key)`` therefore excludes every key of the file, which
  is coarse but harmless: logins are rare and a store usually holds one user.
- ``flock`` excludes open files, not tasks, so one process's tasks are kept apart by an
  :class:`~tradovate_async._store.AnyLoopLock` in front of the file lock, which also works
  for threads that run their own event loops. The task that holds ``lock()`` may call ``save``,
  ``delete`` and ``lock`` again without deadlocking; every other task, even one it started,
  waits (a task-scoped hold cannot leak into a background task that outlives it).
- A file that is corrupt, truncated, foreign or cannot be decrypted is logged at WARNING and
  read as empty, so the next ``save`` replaces it; a bot never stops over a broken cache. So is
  anything at the path that is not a regular file, or larger than ``max_file_size``: reads
  open without blocking (a FIFO) and without following links (see ``_safe_file``).
- What another user could have planted is refused with
  :class:`~tradovate_async.TokenStoreError` instead of being replaced or trusted: a token file
  or a lock file owned by someone else, a lock file that is a link.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import logging
import os
import random
import threading
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.to_thread
import filelock

from ._budget import FileBudget
from ._config import default_token_file
from ._errors import ConfigError, TokenStoreError
from ._exports import publish
from ._models import AccessToken, token_from_record
from ._safe_file import Unusable as _Unusable
from ._safe_file import (
    check_lock_file,
    ensure_dir,
    open_regular,
    planted_lock_message,
    read_capped,
    remove_stale_temporaries,
    replace_atomically,
    tighten_mode,
)
from ._store import AnyLoopLock

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

__all__ = ["ENCRYPTION_KEY_ENV", "FileTokenStore"]

logger = logging.getLogger(__name__)

FORMAT: Final = "tradovate-async/tokens"
VERSION: Final = 1
#: The environment variable :meth:`FileTokenStore.from_env` reads the Fernet key from.
ENCRYPTION_KEY_ENV: Final = "TRADOVATE_TOKEN_KEY"

_ENCRYPT_HINT: Final = (
    "encrypting the token file needs the 'cryptography' package: "
    "pip install 'tradovate-async[encrypt]'"
)
_KEY_PROBLEM: Final = (
    "not a Fernet key (32 url-safe base64-encoded bytes); "
    "create one with FileTokenStore.generate_key()"
)
_POLL_MIN: Final = 0.005
_POLL_MAX: Final = 0.1
#: Largest token file read. A record is about 1 KB, so this holds hundreds of keys, while a
#: huge file planted or grown at the path costs at most this much memory.
DEFAULT_MAX_FILE_SIZE: Final = 1 << 20
#: Longest a lock-free read (``load``) may take before it is abandoned: a hung network file
#: system must not hold up the session that only wanted to look.
DEFAULT_READ_TIMEOUT: Final = 5.0


def _fernet(key: str | bytes, source: str) -> Fernet:
    try:
        from cryptography.fernet import Fernet
    except ImportError as exc:  # pragma: no cover - the test environment has cryptography
        raise ImportError(_ENCRYPT_HINT) from exc
    try:
        return Fernet(key)
    except (ValueError, TypeError):
        # The key itself is never part of the message.
        raise ConfigError({source: _KEY_PROBLEM}) from None


class FileTokenStore:
    """A :class:`~tradovate_async.TokenStore` in a JSON file, locked across processes.

    ``path`` may start with ``~``. Missing directories are created with mode 0700 and the file is
    written with mode 0600. ``encryption_key`` (a Fernet key, see :meth:`generate_key`) encrypts
    the file at rest; a file written with another key or without one is ignored (WARNING) and
    replaced by the next save. ``lock_wait`` bounds the wait for the lock, in seconds: past
    it, :class:`~tradovate_async.TokenStoreError`.

    Reads are bounded: only a regular file is read (opened without blocking and without
    following a link), at most ``max_file_size`` bytes (1 MiB), and a lock-free ``load`` gives
    up after ``read_timeout`` seconds (5 s). Anything else at the path (a FIFO, a device, a
    symbolic link, a huge file) is ignored with a WARNING and replaced by the next save. A file
    readable by others has its mode set back to 0600 (WARNING); a file owned by another user is
    refused (:class:`~tradovate_async.TokenStoreError`), as is a lock file that is a symbolic
    link or belongs to another user.

    Use one instance per file in a process: instances are kept apart by the file lock only, so a
    task holding the lock of one instance cannot save through another instance of the same file.
    An instance may be shared by threads that run their own event loops.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        encryption_key: str | bytes | None = None,
        lock_wait: float = 30.0,
        max_file_size: int = DEFAULT_MAX_FILE_SIZE,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> None:
        if not lock_wait > 0:
            raise ValueError("lock_wait must be positive")
        if max_file_size < 1024:
            raise ValueError("max_file_size must be at least 1024 bytes")
        if not read_timeout > 0:
            raise ValueError("read_timeout must be positive")
        self._max_file_size = int(max_file_size)
        self._read_timeout = float(read_timeout)
        self._path = Path(path).expanduser().absolute()
        self._lock_path = self._path.with_name(self._path.name + ".lock")
        self._lock_wait = float(lock_wait)
        self._fernet = (
            _fernet(encryption_key, "encryption_key") if encryption_key is not None else None
        )
        # thread_local=False: the lock is taken and released from different worker threads.
        self._file_lock = filelock.FileLock(str(self._lock_path), mode=0o600, thread_local=False)
        # One task of this process (any thread, any event loop) at a time in front of the flock.
        self._guard = AnyLoopLock()
        self._holder: tuple[int, int] | None = None  # (thread, task) that holds the lock
        self._budget: FileBudget | None = None

    @classmethod
    def from_env(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        lock_wait: float = 30.0,
        required: bool = False,
        environ: Mapping[str, str] | None = None,
    ) -> FileTokenStore:
        """A store whose encryption key comes from ``TRADOVATE_TOKEN_KEY``.

        ``path`` defaults to ``TRADOVATE_TOKEN_FILE``, else
        ``$XDG_CACHE_HOME/tradovate-async/tokens.json`` (``~/.cache`` by default), the file the
        CLI uses too.

        Without the variable the file is not encrypted, unless ``required`` is true, which makes
        a missing key a :class:`~tradovate_async.ConfigError` rather than a silent plain-text
        file. ``environ`` replaces ``os.environ`` (for tests and ``.env`` loaders).
        """
        env = os.environ if environ is None else environ
        if path is None:
            path = default_token_file()
        key = (env.get(ENCRYPTION_KEY_ENV) or "").strip()
        if not key:
            if required:
                raise ConfigError({ENCRYPTION_KEY_ENV: "missing: the token file must be encrypted"})
            return cls(path, lock_wait=lock_wait)
        _fernet(key, ENCRYPTION_KEY_ENV)  # report a bad key under the variable's name
        return cls(path, encryption_key=key, lock_wait=lock_wait)

    @staticmethod
    def generate_key() -> str:
        """A new random Fernet key, for ``encryption_key`` or ``TRADOVATE_TOKEN_KEY``."""
        try:
            from cryptography.fernet import Fernet
        except ImportError as exc:  # pragma: no cover
            raise ImportError(_ENCRYPT_HINT) from exc
        return Fernet.generate_key().decode("ascii")

    @property
    def path(self) -> Path:
        """The token file (absolute)."""
        return self._path

    @property
    def encrypted(self) -> bool:
        """Whether the file is encrypted at rest."""
        return self._fernet is not None

    def __repr__(self) -> str:
        return f"FileTokenStore(path={str(self._path)!r}, encrypted={self.encrypted})"

    # -- TokenStore -------------------------------------------------------------------------

    async def load(self, key: str) -> AccessToken | None:
        """The stored token, or ``None`` if there is none or the file cannot be used.

        Takes no lock: writes replace the file atomically, so a read sees a whole file.
        """
        tokens: dict[str, Any] | None = None
        try:
            # Abandoned on cancellation or timeout: a read changes nothing, and a hung file
            # system must not hold up the caller (its own move_on_after included).
            with anyio.move_on_after(self._read_timeout):
                tokens = await anyio.to_thread.run_sync(self._read_tokens, abandon_on_cancel=True)
        except FileNotFoundError:
            return None
        except OSError as exc:
            logger.warning(
                "cannot read the token file %s (%s); continuing without a stored token",
                self._path,
                exc.strerror or type(exc).__name__,
            )
            return None
        except _Unusable as exc:
            logger.warning(
                "ignoring the token file %s: %s; the next save replaces it", self._path, exc
            )
            return None
        if tokens is None:
            logger.warning(
                "reading the token file %s took more than %g s; continuing without a stored token",
                self._path,
                self._read_timeout,
            )
            return None
        record = tokens.get(key)
        if record is None:
            return None
        token = _parse(record)
        if token is None:
            logger.warning(
                "ignoring a malformed token record in %s; the next save replaces it", self._path
            )
        return token

    async def save(self, key: str, token: AccessToken) -> None:
        """Store ``token`` unless the file holds one for ``key`` that expires later.

        The read-modify-write runs under the file lock, so concurrent savers of other keys or
        processes are not lost. Raises :class:`~tradovate_async.TokenStoreError` if the lock
        cannot be had or the file cannot be written (or read, as then the check is impossible).
        """
        record = token.to_record()
        async with self._exclusive():
            await anyio.to_thread.run_sync(self._save_sync, key, record, token.expiration_time)

    async def delete(self, key: str) -> None:
        """Remove the token stored under ``key`` (nothing if there is none)."""
        async with self._exclusive():
            await anyio.to_thread.run_sync(self._delete_sync, key)

    def rate_budget(self) -> FileBudget:
        """The request budget shared by every process on this file: ``<path>.budget``."""
        if self._budget is None:
            self._budget = FileBudget(
                self._path.with_name(self._path.name + ".budget"), prepare=self._ensure_dir_or_fail
            )
        return self._budget

    def lock(self, key: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Exclusive use of the file (so of ``key``) by this task, across processes.

        Re-entrant for the task that holds it; other tasks, even its children, wait.
        """
        return self._exclusive()

    async def aclose(self) -> None:
        """Nothing to close: the file lock is only open while held."""
        return None

    # -- locking ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        task = (threading.get_ident(), anyio.get_current_task().id)
        if self._holder == task:
            yield
            return
        deadline = anyio.current_time() + self._lock_wait
        try:
            with anyio.fail_after(self._lock_wait):
                await self._guard.acquire()
        except TimeoutError:
            raise TokenStoreError(self._timeout_message()) from None
        try:
            await self._acquire_file_lock(deadline)
        except BaseException:
            self._guard.release()
            raise
        self._holder = task
        try:
            yield
        finally:
            self._holder = None
            try:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self._release_file_lock)
            finally:
                self._guard.release()

    async def _acquire_file_lock(self, deadline: float) -> None:
        await anyio.to_thread.run_sync(self._ensure_dir_or_fail)
        delay = _POLL_MIN
        while True:
            # Shielded: a cancellation must not abandon a thread that has just taken the lock.
            with anyio.CancelScope(shield=True):
                taken = await anyio.to_thread.run_sync(self._try_file_lock)
            if taken:
                return
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                raise TokenStoreError(self._timeout_message())
            await anyio.sleep(min(remaining, delay * random.uniform(0.5, 1.0)))
            delay = min(delay * 2, _POLL_MAX)

    def _try_file_lock(self) -> bool:
        check_lock_file(self._lock_path)
        try:
            self._file_lock.acquire(timeout=0)
        except filelock.Timeout:
            return False
        except (OSError, RuntimeError) as exc:
            if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
                raise TokenStoreError(
                    planted_lock_message(self._lock_path, "is a symbolic link")
                ) from None
            raise TokenStoreError(
                f"cannot lock the token file {self._lock_path}: {_reason(exc)}"
            ) from exc
        return True

    def _release_file_lock(self) -> None:
        try:
            self._file_lock.release()
        except Exception as exc:  # the descriptor is closed anyway, which drops the flock
            logger.warning("releasing the token file lock %s failed: %s", self._lock_path, exc)

    def _timeout_message(self) -> str:
        return (
            f"timed out after {self._lock_wait:g} s waiting for the token file lock "
            f"{self._lock_path}"
        )

    # -- file I/O (worker threads) -------------------------------------------------------------

    def _ensure_dir_or_fail(self) -> None:
        try:
            ensure_dir(self._path.parent)
        except OSError as exc:
            raise TokenStoreError(
                f"cannot create the directory of the token file {self._path}: {_reason(exc)}"
            ) from exc

    def _read_tokens(self) -> dict[str, Any]:
        """The token table. Raises ``FileNotFoundError``/``OSError``, :class:`_Unusable`, or
        :class:`~tradovate_async.TokenStoreError` for a file owned by another user."""
        fd, info = open_regular(self._path)
        try:
            tokens = self._decode(read_capped(fd, info, self._max_file_size))
            # Only for a usable file: an unusable one is replaced by a 0600 file anyway.
            tighten_mode(fd, info, self._path)
            return tokens
        finally:
            os.close(fd)

    def _decode(self, raw: bytes) -> dict[str, Any]:
        try:
            document = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise _Unusable("it is not valid JSON (corrupt or truncated)") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise _Unusable("it is not a tradovate-async token file")
        version = document.get("version")
        if version != VERSION or isinstance(version, bool):
            shown = version if isinstance(version, int) else "unknown"
            raise _Unusable(f"unsupported format version {shown}")
        encryption = document.get("encryption")
        payload = document.get("tokens")
        if encryption is None:
            if self._fernet is not None:
                raise _Unusable("it is not encrypted, but this store has an encryption key")
            tokens = payload
        elif encryption == "fernet":
            tokens = self._decrypt(payload)
        else:
            raise _Unusable("unknown encryption scheme")
        if not isinstance(tokens, dict):
            raise _Unusable("its token table is malformed")
        return tokens

    def _decrypt(self, payload: object) -> object:
        if self._fernet is None:
            raise _Unusable("it is encrypted, but this store has no encryption key")
        if not isinstance(payload, str):
            raise _Unusable("its encrypted payload is malformed")
        from cryptography.fernet import InvalidToken

        try:
            plain = self._fernet.decrypt(payload.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            raise _Unusable("it cannot be decrypted (another key, or damaged)") from None
        try:
            return json.loads(plain)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise _Unusable("its decrypted content is not valid JSON") from None

    def _tokens_for_update(self) -> dict[str, Any]:
        """The table to modify: empty if the file is missing or unusable (then replaced)."""
        try:
            return self._read_tokens()
        except FileNotFoundError:
            return {}
        except _Unusable as exc:
            logger.warning("replacing the token file %s: %s", self._path, exc)
            return {}
        except OSError as exc:
            # Overwriting a file we cannot read could replace a token that expires later.
            raise TokenStoreError(
                f"cannot read the token file {self._path}: {_reason(exc)}"
            ) from exc

    def _save_sync(self, key: str, record: dict[str, Any], expiration: dt.datetime) -> None:
        tokens = self._tokens_for_update()
        current = _parse(tokens.get(key))
        if current is not None and current.expiration_time > expiration:
            logger.debug("kept the stored token: it expires later than the one offered")
            return
        tokens[key] = record
        self._write(tokens)

    def _delete_sync(self, key: str) -> None:
        try:
            tokens = self._read_tokens()
        except (FileNotFoundError, _Unusable):
            return  # nothing of ours to delete; an unusable file is replaced by the next save
        except OSError as exc:
            raise TokenStoreError(
                f"cannot read the token file {self._path}: {_reason(exc)}"
            ) from exc
        if tokens.pop(key, None) is not None:
            self._write(tokens)

    def _write(self, tokens: dict[str, Any]) -> None:
        document: dict[str, Any] = {"format": FORMAT, "version": VERSION}
        if self._fernet is not None:
            plain = json.dumps(tokens, separators=(",", ":")).encode("utf-8")
            document["encryption"] = "fernet"
            document["tokens"] = self._fernet.encrypt(plain).decode("ascii")
        else:
            document["tokens"] = tokens
        data = json.dumps(document, indent=1).encode("utf-8")
        try:
            ensure_dir(self._path.parent)
            remove_stale_temporaries(self._path)
            replace_atomically(self._path, data)
        except OSError as exc:
            raise TokenStoreError(
                f"cannot write the token file {self._path}: {_reason(exc)}"
            ) from exc


def _parse(record: object) -> AccessToken | None:
    return token_from_record(record)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


publish(globals())  # its public classes show tradovate_async.X (see _exports)
