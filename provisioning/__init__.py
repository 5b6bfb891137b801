"""SSH deploys of one station or a fleet: `station provision` (see docs/provisioning.md).

Import rule: ``firmware.config`` and ``firmware.errors`` only; pyinfra is imported only by
``executor``, which runs in a process of its own.
"""
