"""The station's rules and its write path: codes, decisions, tubes, the store.

Imports no Kivy, paho, gpiozero, smbus2 or numpy (tests/test_layers.py checks it)."""
