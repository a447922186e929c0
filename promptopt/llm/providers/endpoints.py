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


# Hosted APIs that speak OpenAI's protocol (or are reached through it), by host, with the id
# genai-prices files their prices under. A model behind one of these is billed by that provider,
# never free; a host missing here is still looked up by genai-prices' own URL patterns.
# DeepInfra has no prices in genai-prices: recognised so that it is not taken for a local
# server, and its models stay unpriced until the task file prices them.
GATEWAY_HOSTS: dict[str, str] = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "openrouter.ai": "openrouter",
    "api.together.xyz": "together",
    "api.together.ai": "together",
    "api.groq.com": "groq",
    "api.fireworks.ai": "fireworks",
    "api.deepinfra.com": "deepinfra",
    "api.mistral.ai": "mistral",
    "generativelanguage.googleapis.com": "google",
    "api.deepseek.com": "deepseek",
    "api.x.ai": "x-ai",
    "api.cerebras.ai": "cerebras",
    "api.perplexity.ai": "perplexity",
    "api.novita.ai": "novita",
}

_LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost", "ip6-loopback"})


def gateway_of(base_url: str) -> str | None:
    """The hosted provider a base_url belongs to (an id from GATEWAY_HOSTS), or None."""
    host = (urlsplit(base_url).hostname or "").lower()
    for known, provider in GATEWAY_HOSTS.items():
        if host == known or host.endswith("." + known):
            return provider
    return None


def is_local_url(base_url: str) -> bool:
    """Whether `base_url` is a server on this machine (llama.cpp, vLLM, Ollama on loopback)."""
    import ipaddress

    host = (urlsplit(base_url).hostname or "").lower()
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified
