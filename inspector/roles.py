"""Who may do what: the three roles, their rights, and the PIN check every audited change passes.

Defined once here; the history database constrains its users to :data:`ROLES`, the desktop
enables only what :data:`RIGHTS` grant, and every change of what the line decides (teach,
activate, roll back, camera settings) goes through :func:`require_role`, which verifies the PIN
against the database and audits a refusal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Final

from inspector.errors import InspectorError

if TYPE_CHECKING:
    from inspector.history import HistoryDB

OPERATOR: Final = "operator"
TECHNICIAN: Final = "technician"
QUALITY: Final = "quality"
ROLES: Final = (OPERATOR, TECHNICIAN, QUALITY)

#: Rights by role. The operator only watches; nobody but a technician changes what the line
#: decides; quality reviews, labels and exports.
RIGHTS: Final[dict[str, frozenset[str]]] = {
    OPERATOR: frozenset({"view_line", "acknowledge_alarms"}),
    TECHNICIAN: frozenset({
        "view_line", "acknowledge_alarms", "teach", "calibrate", "set_threshold", "activate_model",
        "configure_camera", "choose_product", "set_storage", "manage_users", "view_history",
        "upgrade_model",  # vouching for an old model file's threshold (inspector model upgrade)
        "set_image_retention",  # how long the plant keeps the stations' images (inspector plant retention)
    }),
    QUALITY: frozenset({"view_line", "acknowledge_alarms", "view_history", "label", "export", "copy_to_teach",
                        "set_image_retention"}),
}


def roles_with(right: str) -> tuple[str, ...]:
    """The roles granted ``right``, in the order of :data:`ROLES` (empty for an unknown right)."""
    return tuple(role for role in ROLES if right in RIGHTS[role])


#: Roles allowed to change what the line decides (model, threshold, camera settings).
LINE_CHANGERS: Final = roles_with("activate_model")


class AccessDenied(InspectorError):
    """The user's PIN is wrong or their role may not do this; the refusal is audited."""


class AccountLocked(AccessDenied):
    """Too many wrong PINs in a row: the account takes none until ``until`` (UTC)."""

    def __init__(self, user: str, until: datetime) -> None:
        self.user, self.until = user, until
        super().__init__(f"{user!r} is locked until {until:%Y-%m-%d %H:%M:%S} UTC after too many wrong PINs")


class AccountTampered(AccessDenied):
    """The user's row does not match the audit event that set it (a role or PIN hash edited in
    the database by hand): refused even with the right PIN, until a technician removes the
    account and adds it again."""

    def __init__(self, user: str, problem: str) -> None:
        self.user = user
        super().__init__(f"{user!r} cannot sign in: {problem}; a technician must remove the account and add it "
                         "again (`inspector users remove`, `inspector users add`)")


def require_role(db: HistoryDB, user: str, pin: str, action: str, target: str, roles: tuple[str, ...] = LINE_CHANGERS) -> str:
    """The user's role if the PIN is right and the role is in ``roles``; else AccessDenied.

    Each refusal is written to the audit trail as ``<action>_denied`` with the reason; a locked
    account is refused with the time its lock ends.
    """
    try:
        role = db.verify_pin(user, pin)
    except AccessDenied as exc:  # locked, or a row edited by hand
        db.record_audit(user, "unknown", f"{action}_denied", target, None, {"reason": str(exc)})
        raise AccessDenied(f"{action} refused: {exc}") from exc
    if role is None:
        db.record_audit(user, "unknown", f"{action}_denied", target, None, {"reason": "wrong PIN or unknown user"})
        raise AccessDenied(f"{action} refused: wrong PIN or unknown user {user!r}")
    if role not in roles:
        db.record_audit(user, role, f"{action}_denied", target, None, {"reason": f"role {role} may not {action}"})
        raise AccessDenied(f"{action} refused: {user} is {role}; only {' or '.join(roles)} may {action}")
    return role


@dataclass(frozen=True)
class Caller:
    """Who asks for an audited action: a user's name and the PIN that proves it (None: none to
    be had -- the desktop's operator, who never signs in). The PIN never reaches a repr or the log."""

    user: str
    pin: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Actor:
    """Who did an audited action, as the audit trail records it: a verified user and their role,
    or a system user (``opcua``, ``plc``, ``cli:<login>``) with role ``system``."""

    user: str
    role: str


def authorize(db: HistoryDB, caller: Caller, right: str, target: str, *, action: str | None = None) -> Actor:
    """The one check an audited action makes: ``caller``'s PIN verified and their role granted
    ``right`` (see :data:`RIGHTS`), else AccessDenied. Every refusal is audited as
    ``<action>_denied`` (``action`` defaults to the right's name) with its reason."""
    action = action or right
    roles = roles_with(right)
    if caller.pin is None:
        db.record_audit(caller.user, "unknown", f"{action}_denied", target, None, {"reason": "no PIN given"})
        raise AccessDenied(f"{action.replace('_', ' ')} refused: sign in as {' or '.join(roles)} first")
    return Actor(caller.user, require_role(db, caller.user, caller.pin, action, target, roles))
