"""The operator desktop (PyQt6 + pyqtgraph): ``inspector gui``. The only package that imports Qt.

Models (QObjects, the state and the writes) and views (pages, which only show a model and call
its methods; handlers are named ``_on_<thing>_changed``)::

    bridge.PipelineBridge    the one adapter between the pipeline's threads and Qt: re-emits
                             results and alarms as signals (attached before the pipeline starts)
    line.LineModel           the running line: pipeline life, latest result, counters, trend,
                             alarms (camera, queue, database, drift); a display timer hands the
                             views the newest result at most DISPLAY_HZ times a second
    session.Session          who is signed in (operator by default; technician and quality by
                             PIN from the history database) and what each role may do
    teach_model.TeachModel   samples, training on a worker thread, calibration, activation
    review_model.ReviewModel the paged history table, labels, export, yield over time
    settings_model           camera, trigger, product, storage; GuiSettings (gui.json)
    *_page.py, main_window   the views; widgets.py the shared ones (image + heatmap, banner)
    app.DesktopApp           builds it all from the command line options and saved settings
    demo                     the built-in demo (ELPV solar cells, shipped demo model); no Qt
    cli                      ``inspector gui`` and ``inspector users``

Every write checks the signed-in user's rights against the database and is audited.
"""
