"""The `vllm` backend: a client of the workspace's engine service (engine/service.py).

It is the remote backend pointed at the service's loopback URL with the service's key. start()
starts the service when none is running (progress from its log) and connects; close()
disconnects and leaves the service up, so the next studio or command reuses the loaded model.
"""

from __future__ import annotations

from typing import Any

from persona_studio.engine import loopback, service
from persona_studio.engine.base import Progress, no_progress
from persona_studio.engine.remote import RemoteEngine
from persona_studio.workspace import Workspace


class ServiceEngine(RemoteEngine):
    name = "vllm"

    def __init__(self, ws: Workspace):
        super().__init__("http://127.0.0.1/v1", timeout_s=ws.settings.engine.timeout_s)
        self.ws = ws
        self.pid: int | None = None
        self.started_service = False  # True when start() launched it (headless commands stop it again)

    def start(self, progress: Progress | None = None) -> None:
        progress = progress or no_progress
        info, self.started_service = service.ensure(self.ws, progress)
        self.pid = info.pid
        self.base_url = info.base_url
        self.api_key = service.api_key(self.ws)
        self.max_lora_rank = info.max_lora_rank
        super().start(lambda msg, frac: None)
        progress(f"engine ready (pid {info.pid})", 1.0)

    def _new_client(self, headers: dict[str, str]) -> Any:
        # The service is plain HTTP on loopback: the standard library's client (see loopback.py).
        return loopback.LoopbackClient(headers=headers, timeout=self.timeout_s)

    def _transport_errors(self) -> tuple[type[BaseException], ...]:
        return loopback.ERRORS

    def stop_service(self) -> None:
        """Disconnect and stop the service (the TUI's "stop on exit", a headless one-off)."""
        self.close()
        service.stop(self.ws)
