"""The ``inspector`` command: argparse front ends over the core, calibration and the desktop.

``main``              the parser and the model commands: train, eval, predict, bench, export-onnx,
                      distill
``line_commands``     run (inline inspection from a camera) and history export
``teach_commands``    calibrate and the technician's teach workflow
``gui_command``       gui: the desktop, started through :mod:`launcher`
``users_commands``    users: accounts that sign in
``audit_commands``    audit verify: the audit trail's hash chain
``opcua_commands``    opcua: the OPC UA server's certificate and users (make-cert, add-user)
``common``            what they share: --device, opening the history, credentials (--user, PIN
                      from $INSPECTOR_PIN or a 0600 --pin-file, never the command line)

Nothing below this package parses arguments; a command turns an :class:`~inspector.errors.InspectorError`
into one ``error:`` line and exit status 2.
"""
