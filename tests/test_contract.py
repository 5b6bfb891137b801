"""The published contract: JSON Schemas per event type, the AsyncAPI document, the spec."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.conftest import SHARED
from tests.support.contract import EVENTS_DIR, problems, schemas, validate_event

DOCS = Path(__file__).resolve().parents[1] / "docs"
SPEC = SHARED / "spec" / "events.md"


def asyncapi() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DOCS / "asyncapi.yaml").read_text("utf-8"))
    return loaded


def spec_types() -> dict[str, set[str]]:
    """The event types of the specification and the data fields it requires of each."""
    out: dict[str, set[str]] = {}
    for line in SPEC.read_text("utf-8").splitlines():
        m = re.match(r"^\| `(sampling\.[a-z_.]+)` \| (.*) \|$", line)
        if m:
            cell = re.sub(r"\([^)]*\)", "", m.group(2))
            out[m.group(1)] = set(re.findall(r"(?:^|, )`([a-z_]+)`", cell))
    return out


def spec_topics() -> dict[str, tuple[int, bool]]:
    out: dict[str, tuple[int, bool]] = {}
    for line in SPEC.read_text("utf-8").splitlines():
        m = re.match(
            r"^\| `sampling/\{township\}/\{station\}/([a-z]+)` \| (\d) \| (yes|no) \|", line
        )
        if m:
            out[m.group(1)] = (int(m.group(2)), m.group(3) == "yes")
    return out


@pytest.mark.parametrize("name", sorted(schemas()))
def test_every_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = schemas()[name]
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(f"/{name}.schema.json")
    if name != "envelope":
        assert schema["properties"]["type"] == {"const": name}
        assert schema["examples"], "every event schema carries an example"
        for example in schema["examples"]:
            validate_event(example)


@pytest.mark.skipif(not SPEC.exists(), reason=f"the campaign specification is not at {SPEC}")
def test_every_type_of_the_spec_has_a_schema_requiring_its_fields() -> None:
    required = spec_types()
    assert len(required) == 8
    for type_, fields in required.items():
        assert type_ in schemas(), f"no schema for {type_}"
        data = schemas()[type_]["$defs"]["data"]
        assert set(data["required"]) == fields, type_


@pytest.mark.skipif(not SPEC.exists(), reason=f"the campaign specification is not at {SPEC}")
def test_asyncapi_has_every_topic_of_the_spec_with_its_qos_and_retain() -> None:
    doc = asyncapi()
    assert doc["asyncapi"] == "3.0.0"
    topics = spec_topics()
    assert set(topics) == {"events", "status", "telemetry", "commands", "acks"}
    by_channel = {op["channel"]["$ref"].rsplit("/", 1)[1]: op for op in doc["operations"].values()}
    for topic, (qos, retained) in topics.items():
        channel = doc["channels"][topic]
        assert channel["address"] == f"sampling/{{township}}/{{station}}/{topic}"
        binding = by_channel[topic]["bindings"]["mqtt"]
        assert (binding["qos"], binding["retain"]) == (qos, retained), topic
    assert by_channel["events"]["action"] == "send"
    assert by_channel["commands"]["action"] == by_channel["acks"]["action"] == "receive"


def _resolve(doc: dict[str, Any], pointer: str) -> Any:
    node: Any = doc
    for part in pointer.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_reference_in_the_asyncapi_document_resolves() -> None:
    doc = asyncapi()
    refs = _refs(doc)
    assert len(refs) > 40
    for ref in refs:
        if ref.startswith("#/"):
            _resolve(doc, ref)
        else:
            target = (DOCS / ref).resolve()
            assert target.is_file(), ref
            json.loads(target.read_text("utf-8"))


def test_asyncapi_lists_exactly_the_event_types_that_have_schemas() -> None:
    doc = asyncapi()
    messages = doc["channels"]["events"]["messages"]
    names = {_resolve(doc, m["$ref"])["name"] for m in messages.values()}
    assert names == {n for n in schemas() if n != "envelope"}
    for m in messages.values():
        message = _resolve(doc, m["$ref"])
        ref = message["payload"]["schema"]["$ref"]
        assert ref == f"./events/{message['name']}.schema.json"
    sent = doc["operations"]["publishEvents"]["messages"]
    assert len(sent) == len(messages)


def test_the_contract_doc_describes_every_type() -> None:
    text = (DOCS / "events.md").read_text("utf-8")
    for name in schemas():
        if name != "envelope":
            assert f"### `{name}`" in text, name
    assert "asyncapi.yaml" in text and "validate_event" in text


# -- the helper catches what it should -------------------------------------------------------


def good() -> dict[str, Any]:
    return copy.deepcopy(schemas()["sampling.checkin.recorded"]["examples"][0])


def broken(change) -> list[str]:
    ev = good()
    change(ev)
    return problems(ev)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda e: e["data"].pop("lane"), "lane"),
        (lambda e: e.pop("seq"), "seq"),
        (lambda e: e.update(seq=0), "seq"),
        (lambda e: e.update(seq="7"), "seq"),
        (lambda e: e.update(id="not-a-uuid"), "id"),
        (lambda e: e.update(source="urn:other:T01"), "source"),
        (lambda e: e.update(time="yesterday"), "time"),
        (lambda e: e.update(specversion="0.3"), "specversion"),
        (lambda e: e.update(Extra=1), "Extra"),
        (lambda e: e["data"].update(decision="refer"), "reason"),
        (lambda e: e["data"].update(decision="isolate", lane="main", reason="fever"), "lane"),
        (lambda e: e["data"].update(resident=None), "decision"),
        (lambda e: e["data"].update(position=None), "position"),
        (lambda e: e["data"].update(lane="vip"), "lane"),
        (lambda e: e.update(type="sampling.tube.exploded"), "no schema"),
    ],
)
def test_validate_event_catches_a_broken_event(change, where: str) -> None:
    found = broken(change)
    assert found, "the broken event passed"
    assert any(where in p for p in found), found
    with pytest.raises(AssertionError):
        validate_event(json.dumps(good() | {"seq": -1}))


def test_validate_event_accepts_bytes_and_added_fields() -> None:
    ev = good()
    ev["data"]["something_new"] = {"a": 1}
    validate_event(json.dumps(ev).encode())
    assert EVENTS_DIR.is_dir()
