"""`station selftest`: bring-up checks of each device, the storage, the clock and the broker.

Import rule: ``firmware``, and the agent's own MQTT link (``edge_agent.link``, ``.session``)
for the broker check; never the kiosk.
"""
