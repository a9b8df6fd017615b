"""Links from the line to the plant: subscribers of the durable results (see
:class:`inspector.line.build.LineLink`). ``mqtt``: every result to the MES over MQTT; ``modbus``:
each part's OK/NG to the PLC over Modbus TCP, with the strobe/acknowledge handshake; ``opcua``:
the station's state and its commands (change product, acknowledge alarms) served to SCADA and PLC
clients over OPC UA; ``plant``: every recorded inspection forwarded to the plant's shared PostgreSQL
history, in order and once, through any outage."""
