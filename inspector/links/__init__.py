"""Links from the line to the plant: subscribers of the durable results (see
:class:`inspector.line.build.LineLink`). ``mqtt``: every result to the MES over MQTT."""
