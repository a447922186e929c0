"""Where OpenAI-style models live: OpenAI's own API, Ollama's local server, or a base_url.

Kept apart from the OpenAI provider so that pricing can tell OpenAI's host from a compatible
server without importing the SDK.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from promptopt.task.modelspec import ModelSpec

OPENAI_BASE_URL = "https://api.openai.com/v1"
OLLAMA_BASE_URL = "http://localhost:11434/v1"


def is_openai_host(base_url: str) -> bool:
    """Whether `base_url` is OpenAI's own API (where the real OPENAI_API_KEY belongs)."""
    host = (urlsplit(base_url).hostname or "").lower()
    return host == "api.openai.com" or host.endswith(".api.openai.com")


def resolve_base_url(spec: ModelSpec) -> str:
    """The server a spec talks to: its base_url, Ollama's default for `ollama:`, else OpenAI."""
    if spec.base_url:
        return spec.base_url
    if spec.provider == "ollama":
        return OLLAMA_BASE_URL
    return OPENAI_BASE_URL
