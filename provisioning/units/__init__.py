"""Templates of the systemd units and drop-ins a station gets (package data)."""
