"""Raspberry Pi boot files of the device platform, installed by provisioning (see README.md)."""
