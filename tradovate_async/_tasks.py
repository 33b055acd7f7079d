"""How the session and the sockets own their background tasks: one task group, one way.

anyio binds a task group to the task that entered it. An object used as ``async with obj:``
enters its group in ``__aenter__``, so only the opener may exit it; yet a bot often closes a
session or a socket from another task (a signal handler, a supervisor). :class:`TaskHost` makes
both safe:

* :meth:`TaskHost.open` enters the group and starts the object's main task with
  ``TaskGroup.start()``, so ``async with`` returns only once the object is ready, and a start-up
  failure is raised to the opener with everything cleaned up.
* :meth:`TaskHost.stop` may be called from any task. It cancels the main task and waits until it
  has finished (shielded), so nothing the object started is still running when it returns. The
  group itself is exited by the opener (at once if the opener is the caller, else when it leaves
  its ``async with``), which is what anyio requires; no cancel scope is ever exited from a
  foreign task, and the opener is never cancelled.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc

__all__ = ["MainTask", "TaskHost"]

logger = logging.getLogger(__name__)

#: A main task: ``async def run(*, task_status)`` calling ``task_status.started()`` when ready.
MainTask = Callable[..., Awaitable[None]]


class TaskHost:
    """The task group of one object and the main task running in it."""

    __slots__ = ("_group", "_owner", "_scope", "_stopped")

    def __init__(self) -> None:
        self._group: anyio.abc.TaskGroup | None = None
        self._owner: int | None = None
        self._scope: anyio.CancelScope | None = None
        self._stopped: anyio.Event | None = None

    @property
    def running(self) -> bool:
        """The main task was started and has not finished."""
        return self._stopped is not None and not self._stopped.is_set()

    async def open(self, main: MainTask) -> None:
        """Enter the group in the calling task and start ``main`` in it; wait until it is ready.

        If ``main`` fails before it is ready, its error is raised here and the group is closed.
        """
        self._owner = anyio.get_current_task().id
        self._scope = anyio.CancelScope()
        self._stopped = anyio.Event()
        group = anyio.create_task_group()
        await group.__aenter__()
        try:
            await group.start(self._host, main)
        except BaseException:
            group.cancel_scope.cancel()
            try:
                await group.__aexit__(None, None, None)
            except BaseException:  # pragma: no cover - the original error is more useful
                logger.debug("task group exit after a failed start raised", exc_info=True)
            raise
        self._group = group

    async def _host(
        self, main: MainTask, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        assert self._scope is not None and self._stopped is not None
        try:
            with self._scope:
                await main(task_status=task_status)
        finally:
            self._stopped.set()

    async def stop(self) -> None:
        """Cancel the tasks and wait for them (from any task); exit the group if we opened it."""
        if self._scope is not None:
            self._scope.cancel()
        if self._stopped is not None and not self._stopped.is_set():
            with anyio.CancelScope(shield=True):
                await self._stopped.wait()
        group = self._group
        if group is not None and anyio.get_current_task().id == self._owner:
            self._group = None
            await group.__aexit__(None, None, None)  # not shielded: it is the current scope
