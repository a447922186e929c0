"""JSON over HTTP for the lean OpenAI-compatible path: bytes in, status, headers and bytes out.

Two wires share one small contract (`JsonWire`). `AiohttpWire` is the default: aiohttp's
connection pool hands a request an idle connection in constant time and parses responses in C,
so one request costs a fraction of a millisecond of client CPU; httpx2's pool checks every
connection it holds on each request, which caps one process at a few hundred requests per
second against a fast local server (bench/throughput.py). `HttpxWire` runs the same requests
on an httpx2 client the caller lends (tests fake a server with `httpx2.MockTransport`).

Both raise `WireTimeout` or `WireFailure`, never their library's exceptions, so the provider
classifies errors the same way whichever wire carried the request.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import aiohttp
    import httpx2


@dataclass(frozen=True)
class WireResponse:
    """An HTTP answer, whatever its status."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class WireTimeout(Exception):
    """The request did not complete within its timeout."""


class WireFailure(Exception):
    """The connection failed, or broke before the whole answer arrived."""


class JsonWire(Protocol):
    """Sends one POST with a ready JSON body."""

    async def post(
        self, url: str, content: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> WireResponse:
        """The server's answer; raises WireTimeout or WireFailure."""
        ...

    async def aclose(self) -> None:
        """Close the connections this wire owns."""
        ...


class HttpxWire:
    """A wire on an httpx2 client the caller lends, and closes."""

    def __init__(self, client: httpx2.AsyncClient) -> None:
        self._client = client

    async def post(
        self, url: str, content: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> WireResponse:
        """POST `content` to `url`; raises WireTimeout or WireFailure."""
        import httpx2

        try:
            # The request's own timeout: a lent client may have another default.
            response = await self._client.post(
                url, content=content, headers=dict(headers), timeout=timeout_s
            )
            body = await response.aread()
        except httpx2.TimeoutException:
            raise WireTimeout() from None
        except httpx2.TransportError as error:
            raise WireFailure(str(error)) from None
        return WireResponse(response.status_code, response.headers, body)

    async def aclose(self) -> None:
        """Nothing to close: the client is the caller's."""


class AiohttpWire:
    """A wire on its own aiohttp session, opened on the first request (aiohttp wants a running
    event loop, and the session serves that loop only) and closed by `aclose`."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._proxies: dict[tuple[str, str], str | None] = {}

    def _open(self, url: str) -> aiohttp.ClientSession:
        import aiohttp

        loop = asyncio.get_running_loop()
        if self._session is not None and self._loop is not loop:
            # Its connections can be neither used nor closed from another loop.
            raise RuntimeError(
                "an OpenAI-compatible provider serves the event loop of its first request; "
                "make a new provider for each asyncio.run"
            )
        if self._session is None:
            ssl: Any = True
            if url.startswith("https:"):
                import httpx2

                # httpx2's certificates (the system store, then certifi), so that a server
                # the SDK path trusted is trusted here too.
                ssl = httpx2.create_ssl_context()
            # No connection limit: the endpoint gates bound what is in flight, and the pool
            # must not queue below them. No trust_env: it looks up proxies and ~/.netrc in a
            # thread on every request, and a netrc login next to our Authorization header
            # makes aiohttp refuse the request; proxies are looked up once (`proxy_for`).
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ssl=ssl)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
            self._loop = loop
        return self._session

    def proxy_for(self, url: str) -> str | None:
        """The proxy the environment names for `url` (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, in
        either case, unless NO_PROXY covers its host), as httpx2 reads them; once per origin."""
        parts = urlsplit(url)
        origin = (parts.scheme, parts.hostname or "")
        if origin not in self._proxies:
            proxies = urllib.request.getproxies()
            proxy = proxies.get(parts.scheme) or proxies.get("all")
            if proxy and urllib.request.proxy_bypass(parts.netloc.rpartition("@")[2]):
                proxy = None
            self._proxies[origin] = proxy or None
        return self._proxies[origin]

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        import aiohttp

        timeout = self._timeouts.get(seconds)
        if timeout is None:
            # As httpx2 applies a timeout: to connecting and to each wait for data, not to
            # the request as a whole.
            timeout = aiohttp.ClientTimeout(total=None, connect=seconds, sock_read=seconds)
            self._timeouts[seconds] = timeout
        return timeout

    async def post(
        self, url: str, content: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> WireResponse:
        """POST `content` to `url`; raises WireTimeout or WireFailure."""
        import aiohttp

        session = self._open(url)
        try:
            async with session.post(
                url,
                data=content,
                headers=headers,
                timeout=self._timeout(timeout_s),
                allow_redirects=True,
                proxy=self.proxy_for(url),
            ) as response:
                body = await response.read()
                # Copied: the response's headers go with it when the block ends.
                return WireResponse(response.status, dict(response.headers), body)
        except TimeoutError:
            raise WireTimeout() from None
        except aiohttp.ClientError as error:
            raise WireFailure(str(error) or type(error).__name__) from None
        except ValueError as error:
            # A header aiohttp will not send (a key with a newline from a .env file): the
            # request never left, as httpx2 reports it.
            raise WireFailure(str(error) or type(error).__name__) from None

    async def aclose(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
