"""The station's rules and its write path: codes, decisions, tubes, the store.

``station.Station`` is the way in: a façade over ``checkins.CheckinDesk``, ``tubes.TubeDesk``
and ``views.StationViews``, which write and read through one ``ledger.Ledger``; the rules are
in ``rules``, the SQL in ``store``, ``schema`` and ``reports``, the refusals' texts in
``messages``, the resident flow in ``flow``.

Imports no Kivy, paho, gpiozero, smbus2 or numpy (tests/test_layers.py checks it)."""
