"""Schemathesis hooks for scripts/openapi-check.sh.

The OpenAPI document says everything about the wallet's inputs that a JSON
Schema can say. A few rules of API.md span two inputs, or depend on the
ledger's state, and no schema can hold them; the document names each in the
description of what it governs. Here each such rule is applied to the
requests schemathesis generates as *valid* (positive mode) just before they
are sent, so that "valid by the document" also means "valid by the server"
and a 400 to such a request is a real finding. Requests generated as invalid
(negative mode) are never touched.

In open mode (WALLET_CHECK_MODE=open: a loopback server with no key yet)
every route answers without a key, as API.md says; the document describes
the keyed server, so its security requirements are lifted on loading.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import uuid

import schemathesis

MODE = os.environ.get("WALLET_CHECK_MODE", "keyed")
# The admin key schemathesis calls with (keyed mode): a key cannot revoke
# itself (400 VALIDATION_ERROR naming `name`).
OWN_KEY_NAME = os.environ.get("WALLET_CHECK_KEY_NAME", "")

# The routes whose body carries an idempotency key.
WRITES = re.compile(
    r"^/(wallets/[^/]+/(topup|bonus|spend|transfer|holds)|transactions/[^/]+/reverse|batch"
    r"|holds/[^/]+/(capture|void))$"
)
METADATA_BYTES_MAX = 2048
USER_ID_CHARS_MAX = 128
KEY_NAME_CHARS_MAX = 64

# The newest event cursor seen in an answer of GET /events: the feed has at
# least that many events, so a cursor up to it was given out.
feed_end = 0
# The assets known to exist (the demo seed's, and those seen in answers): a
# list's `asset` filter naming no asset is 400, like a malformed one.
known_assets = {"GOLD", "DIAMOND", "LOYALTY"}


@schemathesis.hook
def before_load_schema(context, raw_schema):
    if MODE != "open":
        return
    for item in raw_schema.get("paths", {}).values():
        for operation in item.values():
            if isinstance(operation, dict) and "security" in operation:
                operation["security"] = []


def _is_positive(case) -> bool:
    meta = case.meta
    return meta is not None and meta.generation.mode.is_positive


def _whole_numbers(value):
    """`5.0` as `5`: JSON Schema counts it an integer, API.md does not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    return value


def _other_user(user: str, than: str) -> str:
    """A valid user id that is not `than`."""
    if user != than:
        return user
    return user[:-1] + ("a" if user[-1] != "a" else "b") if len(user) >= USER_ID_CHARS_MAX else user + "a"


def _bounded_metadata(body: dict) -> None:
    metadata = body.get("metadata")
    if not isinstance(metadata, dict):
        return
    while metadata and len(json.dumps(metadata, ensure_ascii=False, separators=(",", ":")).encode()) > METADATA_BYTES_MAX:
        metadata.pop(next(iter(metadata)))


def _known_asset(body: dict) -> None:
    asset = body.get("asset")
    if isinstance(asset, str) and asset.lower() not in {known.lower() for known in known_assets}:
        body["asset"] = sorted(known_assets)[len(asset) % len(known_assets)]


def _past(text: str) -> str | None:
    """`at` moved into the past when it is a time in the future."""
    try:
        at = datetime.datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00").replace("t", "T"))
    except ValueError:
        return None
    if at.tzinfo is None or at <= datetime.datetime.now(datetime.timezone.utc):
        return None
    return "2000-01-01T00:00:00Z"


@schemathesis.hook
def before_call(context, case, kwargs):
    if not _is_positive(case):
        return
    path = case.operation.path
    method = case.method.upper()
    body = case.body if isinstance(case.body, dict) else None
    if body is not None:
        case.body = body = _whole_numbers(body)
        _bounded_metadata(body)
        for operation in body.get("operations") or []:
            if isinstance(operation, dict):
                _bounded_metadata(operation)
                if operation.get("type") == "transfer" and isinstance(operation.get("to"), str):
                    operation["to"] = _other_user(operation["to"], operation.get("userId"))
    if case.meta.phase.name == "stateful" and body is not None:
        # A chain of calls starts only from a write that succeeds, and a
        # write succeeds only on an asset that exists: name one, so that the
        # stateful phase follows the links from its answers.
        _known_asset(body)
        for operation in body.get("operations") or []:
            if isinstance(operation, dict):
                _known_asset(operation)
    if method == "POST" and WRITES.match(path) and body is not None:
        headers = case.headers if case.headers is not None else {}
        header_key = next((name for name in headers if name.lower() == "idempotency-key"), None)
        if isinstance(body.get("idempotencyKey"), str):
            if header_key is not None:
                headers[header_key] = body["idempotencyKey"]
        elif header_key is None:
            body["idempotencyKey"] = f"schemathesis-{uuid.uuid4()}"
        case.headers = headers
    if path in ("/assets/{asset}/rules", "/wallets/{userId}/rules") and body is not None:
        # No two limits of one type and window (the document says so in
        # words): keep the first of each.
        limits = body.get("limits")
        if isinstance(limits, list):
            seen = set()
            kept = []
            for limit in limits:
                key = (limit.get("type"), limit.get("windowSeconds")) if isinstance(limit, dict) else None
                if key not in seen:
                    seen.add(key)
                    kept.append(limit)
            body["limits"] = kept
    if path == "/wallets/{userId}/transfer" and body is not None and isinstance(body.get("to"), str):
        body["to"] = _other_user(body["to"], (case.path_parameters or {}).get("userId"))
    if (
        path in ("/wallets/{userId}/balance", "/assets/{asset}/supply")
        and case.query
        and isinstance(case.query.get("at"), str)
    ):
        past = _past(case.query["at"])
        if past is not None:
            case.query["at"] = past
    if path in ("/wallets/{userId}/transactions", "/wallets/{userId}/holds") and case.query:
        asset = case.query.get("asset")
        if isinstance(asset, str) and asset.lower() not in {known.lower() for known in known_assets}:
            case.query["asset"] = "GOLD"
    if path == "/events":
        if case.query and isinstance(case.query.get("after"), str) and int(case.query["after"]) > feed_end:
            case.query["after"] = str(feed_end)
        for name in list(case.headers or {}):
            if name.lower() == "last-event-id" and int(case.headers[name]) > feed_end:
                case.headers[name] = str(feed_end)
    if path == "/keys/{name}/revoke" and OWN_KEY_NAME:
        name = (case.path_parameters or {}).get("name")
        if name == OWN_KEY_NAME:
            case.path_parameters["name"] = name + "x" if len(name) < KEY_NAME_CHARS_MAX else name[:-1] + "x"


@schemathesis.hook
def after_call(context, case, response):
    global feed_end
    if response.status_code not in (200, 201):
        return
    path = case.operation.path
    try:
        data = json.loads(response.content)["data"]
    except (ValueError, KeyError, TypeError):
        return
    if path == "/events" and case.method.upper() == "GET":
        try:
            feed_end = max(feed_end, int(data["nextCursor"]))
        except (ValueError, KeyError, TypeError):
            pass
    if path == "/assets":
        for asset in data if isinstance(data, list) else [data]:
            if isinstance(asset, dict):
                known_assets.update(str(asset.get(name)) for name in ("symbol", "id"))
