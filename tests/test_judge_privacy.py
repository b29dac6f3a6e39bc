"""Issue 10 point 2: an online judge never gets raw personal data. `score` against an
OpenAI-compatible endpoint (a local recording server: what matters here is what goes over the
wire) after a review edit put a phone number and an e-mail back into a sample, with a speaker
saved as a phone number: every prompt is redacted by make_dataset.pii, names included."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from persona_studio.cli import main
from persona_studio.workspace import Workspace
from tests.test_clean_pipeline import add_persona, rows, wechat_csv


class _Recorder(BaseHTTPRequestHandler):
    prompts: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).prompts.extend(m["content"] for m in body["messages"])
        reply = {"id": "r", "object": "chat.completion", "created": 0, "model": body["model"],
                 "choices": [{"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": "4"}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_a: object) -> None:
        pass


@pytest.fixture
def judge_server():
    _Recorder.prompts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", _Recorder.prompts
    server.shutdown()
    server.server_close()


def test_online_judge_gets_only_redacted_text(workspace: Workspace, tmp_path: Path, judge_server,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from persona_studio import review

    url, prompts = judge_server
    workspace.settings_path.write_text(json.dumps({"make_dataset": {"judge": {
        "online_llm_clear": True, "base_url": url, "model_name": "judge", "timeout_s": 10}}}), encoding="utf-8")
    ws = Workspace.open(workspace.root)
    add_persona(ws, "alice")
    chat = [("文本", 0, "+44 7911 123456", "hi, it's me", "2024-10-04 11:00:00"),
            ("文本", 1, "+44 7911 123456", "hello there", "2024-10-04 11:01:00"),
            ("文本", 0, "Bob 13812345678", "call me on 0044 20 7946 0958", "2024-10-05 11:00:00"),
            ("文本", 1, "Bob 13812345678", "sure", "2024-10-05 11:01:00")]
    root = str(ws.root)
    assert main(["import", str(wechat_csv(tmp_path / "c.csv", chat)), "--persona", "alice", "--me", "me",
                 "-w", root]) == 0
    assert main(["make-dataset", "--persona", "alice", "-w", root]) == 0
    first = rows(ws, "SELECT id, turns FROM samples ORDER BY id")[0]
    turns = json.loads(first["turns"])
    turns[-1]["content"] = "sure, mail me at 张三@例子.中国 or ring 138-1234-5678"  # a reviewer's edit
    store = ws.store()
    try:
        review.edit_sample(store, first["id"], turns)
    finally:
        store.close()
    assert "138-1234-5678" in rows(ws, "SELECT turns FROM samples WHERE id = ?", (first["id"],))[0]["turns"]

    assert main(["score", "--persona", "alice", "-w", root]) == 0
    assert len(prompts) == 2
    sent = "\n".join(prompts)
    for raw in ("7911", "13812345678", "7946 0958", "138-1234-5678", "张三@例子.中国"):
        assert raw not in sent
    assert "<PHONE>: hi, it's me" in sent and "Bob <PHONE>: call me on <PHONE>" in sent
    assert "mail me at <EMAIL> or ring <PHONE>" in sent
