"""Who is signed in, and what they may do.

The window starts signed in as the line operator (no PIN: watching the line needs none). A
technician or quality engineer signs in with their name and PIN, checked against the salted
hashes in the history database; signing out returns to the operator.

Rights are enforced twice: the views enable only what :meth:`Session.can` allows, and every
write goes through :meth:`Session.authorize`, which verifies the PIN against the database again
(:func:`inspector.roles.require_role`) and audits a refusal. The PIN of the signed-in user is
kept in memory for that, never on disk, and forgotten at sign-out.
"""

from __future__ import annotations

from dataclasses import dataclass

from PyQt6.QtCore import QObject, pyqtSignal

from inspector.roles import OPERATOR, QUALITY, RIGHTS, TECHNICIAN, AccessDenied, AccountLocked, Caller, require_role, roles_with
from inspector.history import HistoryDB
from inspector.roles import Actor
from station import actions

#: Pages each role sees, in the order of the navigation.
PAGES: dict[str, tuple[str, ...]] = {
    OPERATOR: ("operator",),
    TECHNICIAN: ("operator", "teach", "review", "settings"),
    QUALITY: ("operator", "review"),
}
DEFAULT_OPERATOR = "operator"


@dataclass(frozen=True)
class Credentials:
    """Proof of who acts, passed to an audited write: name, role and the PIN to re-verify."""

    user: str
    role: str
    pin: str | None


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

        No PIN is held, so every write still fails in :meth:`authorize`.
        """
        self._user, self._role, self._pin, self._preview = f"({role} preview)", role, None, True
        self.user_changed.emit(self._user, role)

    def caller(self) -> Caller:
        """Who asks, for an audited action of the layer below (which checks the right itself):
        the signed-in user and their PIN; the operator and a preview have none."""
        return Caller(self._user, self._pin)

    def authorize(self, right: str, target: str) -> Credentials:
        """The signed-in user's credentials if they hold ``right``, verified against the database.

        Raises AccessDenied (and audits the refusal) otherwise.
        """
        roles = roles_with(right)
        if self._pin is None:
            self.db.record_audit(self._user, self._role, f"{right}_denied", target, None, {"reason": "not signed in"})
            raise AccessDenied(f"{right.replace('_', ' ')} refused: sign in as {' or '.join(roles)} first")
        role = require_role(self.db, self._user, self._pin, right, target, roles)
        return Credentials(self._user, role, self._pin)
