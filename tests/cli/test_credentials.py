"""A base_url holding user:password@, against a loopback server that echoes the Authorization
header in its error bodies: no form of the credential reaches stdout, stderr or any file of the
run folder, and config.json keeps a URL that still parses."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import yaml

from tests.support.diff import run_cli
from tests.support.echo_server import HeaderEchoServer
from tests.support.search import write_task

USERINFO = "alice:s3cretPassw0rd"
FORMS = (USERINFO, "s3cretPassw0rd", base64.b64encode(USERINFO.encode()).decode().rstrip("="))


def task_at(tmp_path: Path, base_url: str) -> Path:
    (tmp_path / "script.py").write_text("def optimizer(request):\n    return 'Classify.'\n")
    path = write_task(tmp_path)
    spec = yaml.safe_load(path.read_text())
    spec["models"]["target"] = {
        "model": "openai:fake-model",
        "base_url": base_url,
        "url_credentials": True,
        "max_tokens": 8,
    }
    spec["models"]["optimizer"]["model"] = "scripted:script.py:optimizer"
    spec["errors"] = {"max_retries": 0, "max_backoff_s": 0.01}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_echoed_url_credentials_are_written_nowhere(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    with HeaderEchoServer() as server:
        task = task_at(tmp_path, server.url(USERINFO))
        evaluated = run_cli("eval", str(task), "--no-cache", "--json", "--limit", "3")
        ran = run_cli("run", str(task), "--out", str(out), "--no-cache", "--json")
    assert server.received and all(h["authorization"].startswith("Basic") for h in server.received)
    assert evaluated.exit_code == 1 and ran.exit_code == 1, (evaluated.output, ran.output)
    examples = json.loads(evaluated.stdout)["examples"]
    assert "Authorization: Basic [redacted]" in examples[0]["error"]
    texts = [evaluated.stdout, evaluated.stderr, ran.stdout, ran.stderr]
    (run_dir,) = out.iterdir()
    files = [f for f in run_dir.rglob("*") if f.is_file()]
    assert any(f.name == "config.json" for f in files)
    texts += [f.read_text(encoding="utf-8", errors="replace") for f in files]
    for text in texts:
        for form in FORMS:
            assert form not in text, form
    config = json.loads((run_dir / "config.json").read_text())
    assert server.url() in json.dumps(config)
