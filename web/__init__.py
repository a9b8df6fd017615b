"""The quality engineer's review in a browser: ``inspector serve``.

A Flask application (server-side Jinja templates; every style sheet and script ships in
``web/static``, nothing is loaded from the internet) over a history database: the plant's
PostgreSQL, which gathers every station's rows, or a station's own SQLite. A face like the
desktop: it reads the history through :mod:`inspector.history.queries`, draws heatmaps with
:mod:`inspector.overlay` and writes only through the audited actions of :mod:`station.actions`
(sign-in, labels, exports), which check each caller's right themselves.

``web.app``       :func:`create_app`: routes, sign-in, CSRF, rights, error pages
``web.filters``   the list's filters from a query string, refused with a 400 where malformed
``web.pictures``  a row's frame, heat layer, colour scale and annotated overlay, inside the image store only
``web.charts``    yield over time and the false-reject share as SVG (matplotlib, drawn on the server)
``web.signin``    who is signed in: server-side, the PIN in memory for the actions, never in the cookie
``web.server``    the WSGI server (waitress) that ``inspector serve`` runs
"""

from web.app import WebOptions, create_app

__all__ = ["WebOptions", "create_app"]
