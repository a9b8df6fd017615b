"""The desktop launcher: builds the operator desktop from options, saved settings and defaults.

:mod:`launcher.desktop` puts together the database, the active recipe, the camera, the line and
the pages of :mod:`ui`; with no options it is the embedded demo (:mod:`demo`). ``inspector gui``
(in :mod:`cli.gui_command`) starts it.
"""
