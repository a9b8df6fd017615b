"""What of a camera's frame is inspected: the part found in it (:mod:`.align`)."""

from inspector.framing.align import Aligner, Alignment

__all__ = ["Aligner", "Alignment"]
