"""The operator desktop (PyQt6 + pyqtgraph): the only package besides its launcher that imports Qt.

Models (QObjects, the state and the writes) and views (pages, which only show a model and call
its methods; handlers are named ``_on_<thing>_changed``)::

    bridge.PipelineBridge    the one adapter between the pipeline's threads and Qt: re-emits
                             results and alarms as signals (attached before the pipeline starts)
    line.LineModel           a Qt adapter over the running station.Station (the class `inspector
                             run` runs: N >= 1 cameras, plant links, product changes, counts, run
                             audit): latest result, trend, alarms (camera, queue, database, drift),
                             each camera's too; a display timer hands the views the newest result
                             at most DISPLAY_HZ times a second
    session.Session          who is signed in (operator by default; technician and quality by
                             PIN from the history database); roles and rights: inspector.roles
    teach_model.TeachModel   samples, training on a worker thread, calibration, activation
    review_model.ReviewModel the paged history table, labels, export, yield over time
    settings_model           camera(s), trigger, product, storage, NO PART alarm, links; GuiSettings (gui.json)
    *_page.py, main_window   the views; widgets.py the shared ones (image + heatmap, banner)

``launcher.desktop`` assembles these; ``inspector gui`` (``cli.gui_command``) starts it.
Every write is an action of the layers below (station.actions, calibration.teach) that takes the
session's caller, checks the right against the database once and writes one audit event.
"""
