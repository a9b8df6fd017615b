"""Who is signed in, and what they may do.

The window starts signed in as the line operator (no PIN: watching the line needs none). A
technician or quality engineer signs in with their name and PIN, checked against the salted
hashes in the history database; signing out returns to the operator.

Rights are enforced twice: the views enable only what :meth:`Session.can` allows, and every
write is an action of the layers below (:mod:`station.actions`, :mod:`calibration.teach`) that
takes :meth:`Session.caller` and checks the right itself, once: it verifies the PIN against the
database again (:func:`inspector.roles.authorize`) and audits a refusal. The PIN of the
signed-in user is kept in memory for that, never on disk, and forgotten at sign-out.
"""

from __future__ import annotations

from PyQt6.QtCore import QObject, pyqtSignal

from inspector.history import HistoryDB
from inspector.roles import OPERATOR, QUALITY, RIGHTS, TECHNICIAN, Actor, Caller
from station import actions

#: Pages each role sees, in the order of the navigation.
PAGES: dict[str, tuple[str, ...]] = {
    OPERATOR: ("operator",),
    TECHNICIAN: ("operator", "teach", "review", "settings"),
    QUALITY: ("operator", "review"),
}
DEFAULT_OPERATOR = "operator"


class Session(QObject):
    """The signed-in user. ``user_changed(name, role)`` is emitted on sign-in and sign-out."""

    user_changed = pyqtSignal(str, str)

    def __init__(self, db: HistoryDB, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.db = db
        self._user = DEFAULT_OPERATOR
        self._role = OPERATOR
        self._pin: str | None = None
        self._preview = False

    @property
    def user(self) -> str:
        return self._user

    @property
    def role(self) -> str:
        return self._role

    def can(self, right: str) -> bool:
        return right in RIGHTS[self._role]

    def pages(self) -> tuple[str, ...]:
        return PAGES[self._role]

    def sign_in(self, name: str, pin: str) -> str:
        """Signs ``name`` in with their role; AccessDenied (audited) for a wrong name or PIN, or
        an account locked after too many wrong PINs (the message says until when)."""
        role = actions.sign_in(self.db, name, pin, before=self._user).role  # audited, refusals too
        self._user, self._role, self._pin, self._preview = name, role, pin, False
        self.user_changed.emit(name, role)
        return role

    def needs_first_technician(self) -> bool:
        """True on a new database: no technician exists, so nobody could sign in to set up the line."""
        return not self.db.has_technician()

    def create_first_technician(self, name: str, pin: str) -> str:
        """Creates the first technician (audited, refused once one exists) and signs them in."""
        self.db.add_first_technician(name, pin, via="gui")
        return self.sign_in(name, pin)

    def sign_out(self) -> None:
        if self._role != OPERATOR and not self._preview:
            actions.sign_out(self.db, Actor(self._user, self._role), after=DEFAULT_OPERATOR)
        self._user, self._role, self._pin, self._preview = DEFAULT_OPERATOR, OPERATOR, None, False
        self.user_changed.emit(self._user, self._role)

    def preview(self, role: str) -> None:
        """Shows the views as ``role`` sees them without signing anyone in (the screenshot run).

        No PIN is held, so every write is still refused by the action's own check.
        """
        self._user, self._role, self._pin, self._preview = f"({role} preview)", role, None, True
        self.user_changed.emit(self._user, role)

    def caller(self) -> Caller:
        """Who asks, for an audited action of the layer below (which checks the right itself):
        the signed-in user and their PIN; the operator and a preview have none."""
        return Caller(self._user, self._pin)
