"""User-facing errors.

Anything the user can cause (a bad image, an empty folder, a tampered model file, a missing camera)
raises an :class:`InspectorError` whose message is one readable line. The command line prints that
line and exits non-zero, with no traceback; the GUI shows it in a dialog.
"""


class InspectorError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class ImageError(InspectorError):
    """An image that cannot be read or has an unsupported shape or dtype."""


class ModelFileError(InspectorError):
    """A model file that is missing, truncated, tampered with or from an incompatible version."""


class DataError(InspectorError):
    """A data folder that is missing, empty or holds too few usable images."""


class CameraError(InspectorError):
    """A camera that cannot be opened, configured or read."""


class DatabaseError(InspectorError):
    """A history database that cannot be opened or written."""
