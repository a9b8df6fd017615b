"""Calibration and teaching: thresholds with known false-reject rates, reports, the teach workflow.

Modules (no Qt, no argparse; the desktop and the ``inspector`` command call the same functions):

``thresholds``  statistics: :func:`threshold_for_frr` (order statistics, exact interval, tail fit),
                :func:`analyse_defects` (ROC, escape rate, F1-optimal threshold),
                :func:`calibrate_pixel_rule` (map threshold and minimum defect area)
``calibrate``   score images with the engine -> :class:`CalibrationResult`; write thresholds into
                the model file; store them in the history database
``report``      report.json and PNG plots
``quality``     quality gates for good samples (exposure, blur, duplicates, size) -> SampleVerdict
``shadow``      :func:`shadow_compare`: candidate against active model on the same parts
``teach``       the teach workflow, a package: samples and their gates; train, calibrate and
                register; the active model's lifecycle (activate, roll back, hand over, shadow);
                :class:`TeachSession` composes them and holds the audited actions people take

What the line decides with lives in the core: the rule in :mod:`inspector.line.rule`, the active
recipe in :mod:`inspector.recipes`, the drift monitor in :mod:`inspector.line.drift`, roles in
:mod:`inspector.roles`. Convention: a part is rejected when its score is strictly greater than
the threshold.
"""
