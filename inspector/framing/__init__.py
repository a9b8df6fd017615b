"""What of a camera's frame is inspected: the part found in it (:mod:`.align`), its region and
don't-care areas in front of the engine (:mod:`.framed`)."""

from inspector.framing.align import Aligner, Alignment
from inspector.framing.framed import MIN_QUALITY, FramedPrediction, FramedScorer, Framing

__all__ = ["MIN_QUALITY", "Aligner", "Alignment", "FramedPrediction", "FramedScorer", "Framing"]
