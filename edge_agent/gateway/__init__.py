"""`station gateway`: the township gateway's consumer, its store and its operations.

Modules: ``intake`` (what is accepted), ``store`` (the interface and ``open_store``),
``sqlite`` and ``postgres`` (the two backends), ``consumer`` (the MQTT loop that stores and
acknowledges), ``cli`` (the command). See docs/gateway.md.

Import rule: the agent's ``db``, ``errors`` and ``link``, and ``firmware``; never the kiosk.
psycopg is imported only here.
"""

from __future__ import annotations

from edge_agent.gateway.consumer import Gateway, GatewayStats, subscriptions
from edge_agent.gateway.intake import Event, Intake, Rejected
from edge_agent.gateway.store import GatewayStore, StoreResult, open_store

__all__ = [
    "Event",
    "Gateway",
    "GatewayStats",
    "GatewayStore",
    "Intake",
    "Rejected",
    "StoreResult",
    "open_store",
    "subscriptions",
]
