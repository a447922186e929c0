"""A loopback HTTP server that refuses every request with an error body echoing its headers,
as a careless gateway does, and keeps the headers it received."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


class HeaderEchoServer:
    """On 127.0.0.1; each request gets a 400 "context length exceeded" (recorded on the example,
    so the run goes on and writes its files) whose message repeats the Authorization header,
    and the bare token after its scheme."""

    def __init__(self) -> None:
        self.received: list[dict[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                owner.received.append(headers)
                auth = headers.get("authorization", "")
                token = auth.partition(" ")[2]
                message = (
                    f"maximum context length exceeded; you sent Authorization: {auth} "
                    f"(token {token}) and x-api-key: {headers.get('x-api-key', '')}"
                )
                body = json.dumps(
                    {
                        "type": "error",
                        "error": {
                            "message": message,
                            "type": "invalid_request_error",
                            "code": "context_length_exceeded",
                        },
                    }
                ).encode()
                self.send_response(400)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: pytest treats stray output as noise

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def url(self, userinfo: str = "", path: str = "/v1") -> str:
        """The server's base URL, with `userinfo` (user:password) written into it if given."""
        at = f"{userinfo}@" if userinfo else ""
        return f"http://{at}127.0.0.1:{self._server.server_port}{path}"

    def __enter__(self) -> HeaderEchoServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
