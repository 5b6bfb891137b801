"""The station's behaviour: the core rules, the kiosk around them, the screens, the drills.

Rooms and their import rules (tests/test_layers.py holds the code to them, and
docs/architecture.md draws them): ``core`` imports no other room of the kiosk; the root
(``kiosk``, ``workers``, ``panel``, ``speech``, the commands) imports ``core`` and never the
screens or the drills; ``screens`` is the only room that imports Kivy; ``drills`` may import
anything. All may import ``firmware`` and the outbox side of ``edge_agent``.
"""
