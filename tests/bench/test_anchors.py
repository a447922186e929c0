"""bench/anchors.py's own parts that need neither DSPy nor a model: the counting proxy and the
report table."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# bench/ is scripts, not a package: loaded by path, so the type checker sees it once.
_SPEC = importlib.util.spec_from_file_location(
    "anchors_under_test", Path(__file__).resolve().parents[2] / "bench" / "anchors.py"
)
assert _SPEC is not None and _SPEC.loader is not None
anchors: Any = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = anchors  # its dataclasses look their module up there
_SPEC.loader.exec_module(anchors)
start_proxy, table = anchors.start_proxy, anchors.table


class _Echo(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        data = json.dumps({"path": self.path, "got": json.loads(body)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_the_proxy_forwards_requests_unchanged_and_counts_each() -> None:
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    proxy, counter, url = start_proxy(f"http://127.0.0.1:{upstream.server_address[1]}")
    try:
        for i in range(3):
            request = urllib.request.Request(
                f"{url}/chat/completions",
                data=json.dumps({"n": i}).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as reply:
                assert json.loads(reply.read()) == {"path": "/v1/chat/completions", "got": {"n": i}}
        assert counter.count == 3
    finally:
        for server in (proxy, upstream):
            server.shutdown()
            server.server_close()


def _row(seed: int, final: float, verdict: str, **extra: Any) -> dict[str, Any]:
    return {
        "task": "trec",
        "anchor": "gepa",
        "seed": seed,
        "initial_test": 0.33,
        "final_test": final,
        "comparison": {"delta": final - 0.33, "ci95": [-0.05, 0.2], "verdict": verdict},
        "returned_initial": final == 0.33,
        "target_calls_search": 500,
        "target_calls": 700,
        "optimizer_calls": 40,
        "wall_s": 100.0,
        **extra,
    }


def test_the_table_groups_seeds_and_says_what_stopped_a_search() -> None:
    rows = [
        _row(0, 0.33, "no significant change", stopped_by="time limit"),
        _row(1, 0.45, "improved"),
        {"task": "sst2", "anchor": "mipro", "seed": 0, "error": "RuntimeError('boom')"},
    ]
    text = table(rows)
    line = next(x for x in text.splitlines() if x.startswith("| trec | gepa |"))
    assert "| 2 | 0.33 | 0.39 (0.33, 0.45) |" in line
    assert "1 up, 0 down | 1 of 2 | 700 (500 + 200) | 40 | 100 |" in line
    assert "trec gepa seed 0: search stopped early by the time limit" in text
    assert "failed: sst2 mipro seed 0: RuntimeError('boom')" in text


def test_mipro_with_another_number_of_demos_is_its_own_line() -> None:
    # Rows from before --demos existed have no demos_k: they had 4.
    rows = [
        _row(0, 0.40, "improved", anchor="mipro-demos"),
        _row(1, 0.42, "improved", anchor="mipro-demos", demos_k=4),
        _row(0, 0.50, "improved", anchor="mipro-demos", demos_k=8),
    ]
    lines = table(rows).splitlines()
    four = next(x for x in lines if x.startswith("| trec | mipro-demos |"))
    eight = next(x for x in lines if x.startswith("| trec | mipro-demos (k=8) |"))
    assert "| 2 | 0.33 | 0.41 (0.40, 0.42) |" in four
    assert "| 1 | 0.33 | 0.50 (0.50) |" in eight


def test_promptopt_rows_with_another_optimizer_token_limit_are_another_variant() -> None:
    row = {"strategy": "opro", "endpoints": "served", "structured": False}
    assert anchors._quality_variant(row) == "opro (served, whole prompt edited)"
    wider = anchors._quality_variant(row | {"optimizer_max_tokens": 512})
    assert wider == "opro (served, whole prompt edited, optimizer 512 tokens)"


def test_the_demonstration_search_alone_is_named_so() -> None:
    row = {"strategy": "demos", "demos": 4, "demo_sets": "mipro", "endpoints": "served"}
    assert anchors._quality_variant(row | {"structured": False}) == (
        "demos alone, k = 4, MIPROv2 sets (served, whole prompt edited)"
    )
