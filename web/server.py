"""The WSGI server ``inspector serve`` runs: waitress (pure Python, threads, no C build; made for
serving a WSGI application in production, which Flask's own development server is not)."""

from __future__ import annotations

import logging
from typing import Any

from waitress.server import create_server

log = logging.getLogger(__name__)


def make_server(app: Any, host: str, port: int, *, threads: int = 8) -> Any:
    """A waitress server bound to ``host:port`` (port 0: a free one; see ``.effective_port``);
    ``run()`` serves until ``close()``."""
    return create_server(app, host=host, port=port, threads=threads, ident="inspector",
                         clear_untrusted_proxy_headers=True)
