"""The outbox and its delivery over MQTT; the event contract; the township gateway.

Import rule: ``firmware`` only (configuration and the exception tree), never the kiosk.
paho is imported only by ``link``, the one MQTT adapter; ``gateway`` (the township's side)
imports the agent's ``db``, ``errors`` and ``link`` (tests/test_layers.py).
"""
