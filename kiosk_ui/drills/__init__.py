"""Drills: ``station simulate``, scenarios on simulated hardware.

They build the kiosk through its one root (``kiosk_ui.kiosk.build``), speak MQTT only through
the agent's adapter (``edge_agent.link``), and import the screens only lazily (``--window``,
``--screenshots``). Nothing of ours imports them except the ``station`` command; tests and
benchmarks use the demo issuer (``issuer``).
"""
