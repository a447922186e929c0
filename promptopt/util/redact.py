"""One rule for what counts as a secret, used wherever text leaves the process."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

MASK = "[redacted]"

# Provider key shapes (OpenAI sk-/sk-proj-, Anthropic sk-ant-, pk-/rk- keys, Groq gsk_) and
# bearer tokens. Long sk- and gsk_ keys are matched with no word boundary before them: run files
# are redacted as serialized JSON, where a key after a newline follows the letter of "\n".
_KEY_LIKE = re.compile(
    r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-*.]{4,}"
    r"|(?:sk-|gsk_)[A-Za-z0-9_\-]{8,}"
    r"|Bearer\s+\S+"
)
# "Basic <base64 of user:password>"; only a token that decodes to something with a colon counts,
# so prose such as "Basic arithmetic" in a prompt is left alone.
_BASIC = re.compile(r"\bBasic\s+([A-Za-z0-9+/]{4,}={0,2})(?![A-Za-z0-9+/=])")
# Credentials inside a URL: user:password@ (removed, so the URL still parses, as config.json must
# for --resume) and key-like query parameters.
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s\"]+@")
# The host part after a URL's userinfo; anchored on "://" by a lookbehind, not on a scheme
# pattern, which would rescan every run of letters (quadratic in a long model output).
_USERINFO_AND_HOST = re.compile(r"(?<=://)[^/@\s\"]+@[^/\s\"]*")
_URL_KEY_PARAM = re.compile(r"(?i)([?&](?:api[-_]?key|key|token|access_token|sig)=)[^&\s\"]+")


def url_credentials(url: str) -> list[str]:
    """The secret forms of a URL's `user:password@` part: as written, decoded, and the base64
    that HTTP Basic auth sends (what a server echoing the header shows), longest first."""
    try:
        userinfo = urlsplit(url).netloc.rpartition("@")[0]
    except ValueError:  # an unparsable URL, such as an unclosed IPv6 bracket
        return []
    if not userinfo:
        return []
    decoded = unquote(userinfo)
    basic = base64.b64encode(decoded.encode("utf-8")).decode("ascii")
    # The password alone is left out: a short common word would be masked all over a run file.
    forms = {userinfo, decoded, basic, basic.rstrip("=")}
    return sorted(forms, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with every given secret and anything that looks like an API key or Basic
    credentials replaced by a mask, and credentials written into URLs removed (the user:password
    part) or masked (key-like query parameters).

    The user:password of a URL in `text` counts as a given secret too, so it and its base64 are
    masked wherever else they appear.
    """
    found = [
        form
        for match in _USERINFO_AND_HOST.finditer(text)
        for form in url_credentials("//" + match[0])
    ]
    for secret in sorted([*secrets, *found], key=lambda s: len(s or ""), reverse=True):
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    text = _URL_USERINFO.sub("", text)
    text = _BASIC.sub(_mask_basic, text)
    text = _URL_KEY_PARAM.sub(r"\1" + MASK, text)
    return _KEY_LIKE.sub(MASK, text)


def _mask_basic(match: re.Match[str]) -> str:
    token = match.group(1)
    try:
        decoded = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        return match.group(0)
    return f"Basic {MASK}" if b":" in decoded else match.group(0)
