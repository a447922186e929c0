"""One rule for what counts as a secret, used wherever text leaves the process."""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "[redacted]"

# Provider key shapes (OpenAI sk-/sk-proj-, Anthropic sk-ant-, pk-/rk- keys, Groq gsk_) and
# bearer tokens. Long sk- and gsk_ keys are matched with no word boundary before them: run files
# are redacted as serialized JSON, where a key after a newline follows the letter of "\n".
_KEY_LIKE = re.compile(
    r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-*.]{4,}"
    r"|(?:sk-|gsk_)[A-Za-z0-9_\-]{8,}"
    r"|Bearer\s+\S+"
)
# Credentials inside a URL: user:password@ and key-like query parameters.
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s\"]+@")
_URL_KEY_PARAM = re.compile(r"(?i)([?&](?:api[-_]?key|key|token|access_token|sig)=)[^&\s\"]+")


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with every given secret, anything that looks like an API key and credentials
    written into URLs replaced by a mask."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    text = _URL_USERINFO.sub(MASK + "@", text)
    text = _URL_KEY_PARAM.sub(r"\1" + MASK, text)
    return _KEY_LIKE.sub(MASK, text)
