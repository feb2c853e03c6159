"""Every line sluice writes in a batch API's format validates against the
provider's own model: the official `anthropic` SDK's
`MessageBatchIndividualResponse`, and for OpenAI (whose Python package has no
type for a batch output line) the JSON Schema of the API reference's
"request output object" (openai_batch_output.schema.json, source named in
it), with each 200 body parsed by the `openai` package's `ChatCompletion`.

Runs the built binary (target/debug/sluice, or $SLUICE_BIN) against
`sluice mock` on 127.0.0.1, over inputs that produce every mapping: success,
HTTP 4xx/5xx with JSON and non-JSON bodies, each transport failure kind,
invalid lines and duplicates. (A certificate failure needs a TLS server, and a wait too
long to honour closes the origin: those two mappings are covered by the Rust
golden tests only.)
"""

import json
import os
import pathlib
import subprocess
import sys

import jsonschema
import pytest
from anthropic.types.messages import MessageBatchIndividualResponse
from openai.types.chat import ChatCompletion

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("SLUICE_BIN", str(ROOT / "target" / "debug" / "sluice"))
SCHEMA = json.loads((pathlib.Path(__file__).parent / "openai_batch_output.schema.json").read_text())
ENV = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()} | {"NO_PROXY": "*"}


@pytest.fixture(scope="module")
def mock():
    """`sluice mock` on a free port; its URL."""
    proc = subprocess.Popen(
        [BIN, "mock", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
    )
    try:
        line = proc.stdout.readline()
        assert "listening on http://" in line, line
        yield line.strip().rsplit(" ", 1)[-1]
    finally:
        proc.kill()
        proc.wait(timeout=10)


def closed_port():
    """A local port nothing listens on."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def anthropic_line(custom_id, model):
    return {"custom_id": custom_id, "params": {"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}}


def openai_line(custom_id, model):
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": {"model": model, "messages": [{"role": "user", "content": "hi"}]}}


def every_case(make, base):
    """Input lines for every mapping, built with `make` for the provider's own lines."""
    port = closed_port()
    lines = [make("ok-1", "mock-model"), make("ok-2", "mock-model")]
    for status in (400, 401, 403, 404, 413, 429, 500, 503, 529):
        lines.append(make(f"json-{status}", f"status-{status}"))
    for status in (200, 404, 502):
        lines.append(make(f"text-{status}", f"text-{status}"))
    lines += [
        {"custom_id": "other-json-500", "url": "/status/500"},
        {"custom_id": "binary-200", "url": "/bytes/16"},
        {"custom_id": "connect", "url": f"http://127.0.0.1:{port}/x"},
        {"custom_id": "dns", "url": "http://nothing.invalid/x"},
        {"custom_id": "timeout", "url": "/hang"},
        {"custom_id": "reset", "url": "/reset"},
        {"custom_id": "protocol", "url": "/truncate"},
        {"custom_id": "body-too-large", "url": "/bytes/4096"},
        {"custom_id": "invalid", "params": "not an object"},
        make("ok-1", "mock-model"),  # a duplicate id
    ]
    return [json.dumps(line) for line in lines] + ["{not json"]


def run(tmp_path, base, fmt, lines):
    """Runs sluice over `lines`; returns every output line (output and errors files)."""
    src = tmp_path / f"{fmt}.in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    out, err = tmp_path / f"{fmt}.jsonl", tmp_path / f"{fmt}.errors.jsonl"
    proc = subprocess.run(
        [BIN, "run", str(src), "-q", "--base-url", base, "--output-format", fmt,
         "-o", str(out), "--errors-output", str(err), "--retries", "0",
         "--timeout", "2s", "--max-body-size", "1KiB",],
        capture_output=True, text=True, timeout=60, env=ENV,
    )
    assert proc.returncode == 1, proc.stderr
    ok = [json.loads(l) for l in out.read_text().splitlines()]
    failed = [json.loads(l) for l in err.read_text().splitlines()]
    assert len(ok) + len(failed) == len(lines), (ok, failed)
    return ok, failed


def test_every_anthropic_batch_line_validates_against_the_sdk(tmp_path, mock):
    ok, failed = run(tmp_path, mock, "anthropic-batch", every_case(anthropic_line, mock))
    for line in ok + failed:
        parsed = MessageBatchIndividualResponse.model_validate_json(json.dumps(line))
        assert parsed.custom_id == line["custom_id"]
    assert {l["custom_id"] for l in ok} == {"ok-1", "ok-2"}
    assert all(l["result"]["type"] == "succeeded" for l in ok)
    assert all(l["result"]["type"] == "errored" for l in failed)
    by_id = {l["custom_id"]: l["result"]["error"] for l in failed if l["custom_id"] != "ok-1"}
    assert by_id["json-429"]["error"]["type"] == "rate_limit_error"
    assert by_id["json-429"]["request_id"].startswith("req_mock")
    assert by_id["text-502"]["error"] == {"type": "api_error", "message": "upstream answered 502"}
    assert by_id["text-404"]["error"]["type"] == "not_found_error"
    assert by_id["other-json-500"]["error"]["type"] == "api_error"
    for kind in ("connect", "dns", "timeout", "reset", "protocol"):
        assert by_id[kind]["error"]["type"] == "api_error"
        assert by_id[kind]["error"]["message"].startswith(f"{kind}: "), by_id[kind]
    assert by_id["body-too-large"]["error"]["message"].startswith("body_too_large: ")
    assert by_id["invalid"]["error"]["type"] == "invalid_request_error"


def test_every_openai_batch_line_validates_against_the_reference_schema(tmp_path, mock):
    ok, failed = run(tmp_path, mock, "openai-batch", every_case(openai_line, mock))
    for line in ok + failed:
        jsonschema.validate(line, SCHEMA)
        assert (line["response"] is None) != (line["error"] is None), line
        assert line["id"].startswith("batch_req_")
    for line in ok:
        assert 200 <= line["response"]["status_code"] < 300
        if line["custom_id"].startswith("ok-"):
            ChatCompletion.model_validate(line["response"]["body"])
    by_id = {l["custom_id"]: l for l in failed if l["error"] is None or l["error"]["code"] != "duplicate_id"}
    assert by_id["json-400"]["response"]["body"]["error"]["message"] == "mock error 400"
    assert by_id["json-400"]["response"]["request_id"].startswith("req_mock")
    assert by_id["text-502"]["response"]["body"]["error"]["message"] == "upstream answered 502"
    for kind in ("connect", "dns", "timeout", "reset", "protocol"):
        assert by_id[kind]["error"]["code"] == kind
    assert by_id["body-too-large"]["error"]["code"] == "body_too_large"
    assert by_id["invalid"]["error"]["code"] == "invalid_request"
    assert sum(1 for l in failed if l["error"] and l["error"]["code"] == "duplicate_id") == 1


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
