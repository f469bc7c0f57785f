"""The servers under test: rt's launcher and two baselines, each with a publisher control port.

Every server prints one JSON line on stdout when it is ready::

    {"ready": true, "pid": 123, "ws_port": 40001, "control_port": 40002, ...}

and then serves until it is killed. The control port speaks bench/servers/plan.py's protocol.
"""
