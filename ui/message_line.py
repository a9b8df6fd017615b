"""The message line of a page: what its model last said, and why an action was refused.

The review, teach and settings pages each show their model's messages, and the refusal
(an :class:`~inspector.errors.InspectorError`) of an action a button starts, in one label; it is
written once here so that the pages say both alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from PyQt6.QtWidgets import QLabel, QWidget

from inspector.errors import InspectorError
from ui.widgets import FAIL_COLOR

#: A message about what went through: green, darker than a PASS's.
OK_COLOR = "#1b5e20"

T = TypeVar("T")


def message_html(text: str, is_error: bool) -> str:
    """``text`` as rich text: red for an error, else green."""
    color = FAIL_COLOR if is_error else OK_COLOR
    return f"<span style='color:{color}'>{text}</span>"


class MessageLine(QLabel):
    """A word-wrapped label for a page's messages (connect the model's ``message`` to :meth:`say`)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)

    def say(self, text: str, is_error: bool) -> None:
        self.setText(message_html(text, is_error))

    def guard(self, action: Callable[[], T]) -> T | None:
        """``action()``; an InspectorError it raises is said here (None) rather than escaping the
        button's slot, so that a refused action leaves the page as it was with the reason shown."""
        try:
            return action()
        except InspectorError as exc:
            self.say(str(exc), True)
            return None
