"""The published event schemas (a copy of docs/events, checked equal by the tests)."""
