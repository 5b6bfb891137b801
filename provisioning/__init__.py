"""SSH deploys of one station or a fleet: `station provision` (see docs/provisioning.md)."""
