"""Who is signed in to the web review, kept on the server.

The browser's cookie holds only a random session id (signed by Flask); the name, role and PIN
stay in this process's memory. The PIN is kept, as the desktop keeps it (``ui.session``), because
every audited action verifies it again against the database (:func:`inspector.roles.authorize`):
a user removed or given a new PIN since signing in is refused at their next label or export.
Signing out, or :attr:`SignIns.idle_s` without a request, forgets it; so does a restart.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

from inspector.roles import RIGHTS, Caller


@dataclass
class SignedIn:
    user: str
    role: str
    pin: str = field(repr=False)
    last_seen: float

    def can(self, right: str) -> bool:
        return right in RIGHTS.get(self.role, ())

    def caller(self) -> Caller:
        return Caller(self.user, self.pin)


class SignIns:
    """Signed-in users by session id; one lock, as the server answers requests in threads."""

    def __init__(self, idle_s: float, clock=time.monotonic) -> None:
        self.idle_s = idle_s
        self._clock = clock
        self._by_id: dict[str, SignedIn] = {}
        self._lock = threading.Lock()

    def add(self, user: str, role: str, pin: str) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._by_id[sid] = SignedIn(user, role, pin, self._clock())
        return sid

    def get(self, sid: str | None) -> SignedIn | None:
        """The user of ``sid`` (their idle time restarted), or None: unknown, signed out or idle too long."""
        if not sid:
            return None
        now = self._clock()
        with self._lock:
            for key in [k for k, v in self._by_id.items() if now - v.last_seen > self.idle_s]:
                del self._by_id[key]
            signed = self._by_id.get(sid)
            if signed is not None:
                signed.last_seen = now
            return signed

    def remove(self, sid: str | None) -> SignedIn | None:
        with self._lock:
            return self._by_id.pop(sid, None) if sid else None
