"""Commands from the gateway: parsed, validated against their JSON Schemas, applied whole.

A command arrives on ``sampling/{township}/{station}/commands`` as JSON::

    {"id": "<uuid>", "command": "set_pool_size", "args": {"pool_size": 8}}

Each command's ``args`` has a schema in ``edge_agent/command_schemas`` (published in
docs/commands/). Anything that is not valid JSON, names an unknown command, breaks its
schema or leaves the settings inconsistent is rejected with a ``CommandError`` saying why,
and nothing changes. A settings change is stored in the ``settings_override`` table together
with a ``sampling.settings.changed`` event, in one transaction.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from edge_agent import outbox
from edge_agent.db import Database, write_transaction
from edge_agent.errors import CommandError, StorageError
from edge_agent.events import EventType
from firmware.config import SamplingSection

COMMANDS = ("set_thresholds", "set_pool_size", "request_telemetry", "resend_from", "recall_update")
MAX_COMMAND_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class Command:
    id: str
    command: str
    args: dict[str, Any]


@cache
def schema(name: str) -> dict[str, Any]:
    """The JSON Schema ``name`` (``envelope``, ``reply`` or a command's name)."""
    text = resources.files("edge_agent.command_schemas").joinpath(f"{name}.schema.json")
    loaded: dict[str, Any] = json.loads(text.read_text(encoding="utf-8"))
    return loaded


def _validate(instance: Any, name: str, where: str) -> None:
    validator = jsonschema.Draft202012Validator(schema(name))
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        path = ".".join(str(p) for p in err.absolute_path)
        at = f"{where}.{path}" if path else where
        raise CommandError(f"{at}: {err.message}")


def command_id(payload: bytes) -> str | None:
    """The ``id`` of a command, if it can be read at all (for the reply to a rejection)."""
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(data, dict) and isinstance(data.get("id"), str) and len(data["id"]) <= 64:
        return str(data["id"])
    return None


def parse(payload: bytes) -> Command:
    """Read and validate one command, or raise CommandError saying what is wrong with it."""
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandError(f"command too large ({len(payload)} bytes, at most {MAX_COMMAND_BYTES})")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError("malformed command: not UTF-8 text") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CommandError(f"malformed command: not JSON ({exc})") from None
    _validate(data, "envelope", "command")
    name = data["command"]
    if name not in COMMANDS:
        raise CommandError(f"unknown command {name!r}; known: {', '.join(COMMANDS)}")
    args = data.get("args", {})
    _validate(args, name, "args")
    return Command(str(data["id"]), str(name), dict(args))


def effective_sampling(conn: sqlite3.Connection, base: SamplingSection) -> dict[str, Any]:
    """The sampling settings in force: the configuration file, overridden by commands."""
    return base.with_overrides(outbox.settings_overrides(conn))


def apply_settings(
    db: Database, source: str, base: SamplingSection, cmd: Command
) -> dict[str, Any]:
    """Store a settings command's overrides and its event atomically; returns the changes.

    Raises CommandError when the result would be inconsistent (nothing is stored then).
    """
    if cmd.command not in ("set_thresholds", "set_pool_size"):
        raise CommandError(f"{cmd.command} does not change settings")
    try:
        with write_transaction(db) as conn:
            # A command delivered twice (QoS 1 after a dropped link) is applied once.
            done = conn.execute(
                "SELECT value FROM agent_state WHERE key = ?", (f"command.{cmd.id}",)
            ).fetchone()
            if done is not None:
                earlier: dict[str, Any] = json.loads(done[0])["changes"]
                return earlier
            current = effective_sampling(conn, base)
            proposed = {**current, **cmd.args}
            try:
                SamplingSection.model_validate(proposed)
            except ValueError as exc:
                raise CommandError(f"rejected, out of range: {_first_problem(exc)}") from None
            changes = {f"sampling.{k}": v for k, v in cmd.args.items()}
            previous = {f"sampling.{k}": current[k] for k in cmd.args}
            now = time.time()
            conn.executemany(
                "INSERT INTO settings_override(key, value, updated_at, origin) VALUES (?,?,?,?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at, origin = excluded.origin",
                [(k, json.dumps(v), now, f"command:{cmd.id}") for k, v in changes.items()],
            )
            outbox.append(
                conn,
                source=source,
                type=EventType.SETTINGS_CHANGED,
                data={"command": cmd.id, "changes": changes, "previous": previous},
                at=now,
            )
            outbox.set_state(
                conn, f"command.{cmd.id}", {"at": outbox.rfc3339(now), "changes": changes}
            )
    except StorageError as exc:
        raise CommandError(f"not stored: {exc}") from exc
    return changes


def _first_problem(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        msg = str(first.get("msg", exc)).removeprefix("Value error, ")
        return f"{loc}: {msg}" if loc else msg
    return str(exc)


def reply(
    cmd_id: str | None, ok: bool, error: str | None, result: dict[str, Any] | None = None
) -> bytes:
    body: dict[str, Any] = {"id": cmd_id, "ok": ok, "error": error}
    if result is not None:
        body["result"] = result
    return json.dumps(body, ensure_ascii=False, sort_keys=True).encode()
