"""Slow work (training, loading a model, calibrating, exporting) off the GUI thread.

:func:`run_task` runs a function on a plain Python thread and reports back through the signals of
a :class:`Task`, which lives in the GUI thread: Qt queues signals emitted from the worker thread,
so ``finished``/``failed``/``progress`` slots always run in the GUI thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from PyQt6.QtCore import QObject, pyqtSignal

from inspector.errors import InspectorError

log = logging.getLogger(__name__)


class Task(QObject):
    """One background job. ``failed`` carries a one-line message for the user."""

    progress = pyqtSignal(object)
    finished = pyqtSignal(object)
    failed = pyqtSignal(str)

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.cancel = threading.Event()
        self.thread: threading.Thread | None = None
        self.done = threading.Event()

    @property
    def running(self) -> bool:
        return self.thread is not None and not self.done.is_set()


def run_task(
    name: str,
    fn: Callable[[Task], Any],
    parent: QObject | None = None,
    *,
    finished: Callable[[Any], None] | None = None,
    failed: Callable[[str], None] | None = None,
    progress: Callable[[Any], None] | None = None,
) -> Task:
    """Starts ``fn(task)`` on a daemon thread; ``fn`` may emit ``task.progress`` and should
    return when ``task.cancel`` is set. Its return value arrives in ``task.finished``; an
    exception in ``task.failed`` (InspectorError: its message; anything else: logged in full).

    Pass the slots here: they are connected before the thread starts, so a job that ends at once
    is not missed (a signal emitted before its connection exists reaches nobody).
    """
    task = Task(name, parent)
    for signal, slot in ((task.finished, finished), (task.failed, failed), (task.progress, progress)):
        if slot is not None:
            signal.connect(slot)

    def body() -> None:
        try:
            result = fn(task)
        except InspectorError as exc:
            task.done.set()
            task.failed.emit(str(exc))
        except Exception as exc:  # a bug: the user still gets a line, the log the traceback
            log.exception("%s failed", name)
            task.done.set()
            task.failed.emit(f"{name} failed: {type(exc).__name__}: {exc}")
        else:
            task.done.set()
            task.finished.emit(result)

    task.thread = threading.Thread(target=body, name=f"ui-{name}", daemon=True)
    task.thread.start()
    return task
