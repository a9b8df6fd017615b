"""Calibration and teaching: thresholds with known false-reject rates, drift, and the teach workflow.

Modules (no Qt anywhere; the GUI calls the same functions as the ``inspector`` command):

``thresholds``  statistics: :func:`threshold_for_frr` (order statistics, exact interval, tail fit),
                :func:`analyse_defects` (ROC, escape rate, F1-optimal threshold),
                :func:`calibrate_pixel_rule` (map threshold and minimum defect area)
``rule``        the pipeline's ``DecisionRule`` to and from model metadata and calibration rows
``calibrate``   score images with the engine -> :class:`CalibrationResult`; write thresholds into
                the model file; store them in the history database
``report``      report.json and PNG plots
``drift``       :func:`check_drift` and :class:`DriftMonitor` (KS test and quantile shift)
``quality``     quality gates for good samples (exposure, blur, duplicates, size)
``teach``       :class:`TeachSession`: collect, train, calibrate, activate, roll back, shadow
``recipes``     :func:`active_recipe`: a product's active model + thresholds + camera settings
``shadow``      :func:`shadow_compare`: candidate against active model on the same parts
``cli``         ``inspector calibrate`` and ``inspector teach ...``

Convention: a part is rejected when its score is strictly greater than the threshold.
"""
