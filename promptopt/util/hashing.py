"""One content hash for cache keys, task and data fingerprints, and scoring identities."""

from __future__ import annotations

import hashlib
import json
from json.encoder import encode_basestring
from typing import Any

# One encoder for every call: `json.dumps` with options builds a new one each time, a cost
# paid on every cache key.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
)


def canonical_json(value: Any) -> str:
    """`value` as JSON with sorted keys and no whitespace, so equal values give equal text."""
    return _CANONICAL.encode(value)


def json_text(text: str) -> str:
    """`text` as a JSON string, exactly as `canonical_json` writes it."""
    return encode_basestring(text)


def content_hash(value: Any) -> str:
    """The sha256 hex digest of `value`'s canonical JSON."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()
