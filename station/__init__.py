"""The station: what a running inspection station is, and what people do to it.

Between the faces (``cli``, ``launcher``, ``ui``) and what they put together (``demo``,
``calibration``, ``drivers``, the core). Three rooms, and a cupboard:

``station.config``   :class:`StationConfig`: cameras, product, storage, plant links as plain data;
                     :data:`LINKS` declares each link's setting once (option, title, hint, check)
``station.running``  :class:`Station`: N >= 1 cameras on one engine, built, started, stopped;
                     the plant links made, started, drained and closed (``station.links``);
                     product changes from the plant; the shift counts; the run's audit
``station.actions``  the audited actions people take (export, acknowledge alarms, the
                     station's settings): the caller's right checked once, one audit event
``station.opcua``    the OPC UA server's security files for ``inspector opcua``: a certificate
                     made offline, the users who may call its methods

``inspector run`` is arguments -> :class:`StationConfig` -> :class:`Station` -> a printer; the
desktop's :class:`ui.line.LineModel` is a Qt adapter over the same :class:`Station`.
"""

from station.config import LINK_BY_NAME, LINKS, LinkSpec, StationConfig, check_link, shown_uri
from station.links import LINK_ALARMS, LINK_ERROR, StationLinks, link_title
from station.running import STOP_TIMEOUT_S, CameraStartError, Station, StopReport, run_counts

__all__ = [
    "LINKS",
    "LINK_ALARMS",
    "LINK_BY_NAME",
    "LINK_ERROR",
    "STOP_TIMEOUT_S",
    "CameraStartError",
    "LinkSpec",
    "Station",
    "StationConfig",
    "StationLinks",
    "StopReport",
    "check_link",
    "link_title",
    "run_counts",
    "shown_uri",
]
