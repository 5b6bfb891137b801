"""Drills: `station simulate`, scenarios on simulated hardware."""
