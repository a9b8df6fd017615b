"""The teach workflow: good samples in, an activated, calibrated model out. One API for the
``inspector teach`` command and the desktop's teach page.

Modules, by what changes together:

``folders``    where a product's teach files live (:class:`TeachFolders`)
``samples``    the good samples and their quality gates: add, collect from a folder or a
               camera, remove, rejections, the usable ones and their train/calibration split
``models``     train, calibrate and register: candidate versions, a threshold set by hand
``lifecycle``  which version runs the line: activate, roll back, hand over, shadow, staged teach
``files``      a model file calibrated into the database by hand (``inspector calibrate --db``)
``workflow``   :class:`TeachSession`, the three composed for one product, and the audited
               actions people take (each checks the caller's right once and writes one event)

Threads: methods run in the caller's thread; a training takes a progress callback and a
``threading.Event`` to cancel (its checkpoint lets the next training resume).
"""

from calibration.teach.folders import TeachFolders, default_workdir
from calibration.teach.lifecycle import Lifecycle, StagedTeach
from calibration.teach.models import KINDS, MODES, Models, TeachResult, calibration_metrics
from calibration.teach.samples import CALIBRATION_FRACTION, MIN_CALIBRATION_IMAGES, CollectResult, Samples
from calibration.teach.workflow import TEACH_KINDS, TeachSession
from inspector.method.training import QUICK_TRAIN_S  # the desktop's teach page says the quick budget

__all__ = [
    "CALIBRATION_FRACTION", "KINDS", "MIN_CALIBRATION_IMAGES", "MODES", "QUICK_TRAIN_S", "TEACH_KINDS",
    "CollectResult", "Lifecycle", "Models", "Samples", "StagedTeach", "TeachFolders", "TeachResult", "TeachSession",
    "calibration_metrics", "default_workdir",
]
