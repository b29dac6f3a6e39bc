"""The studio app: one mode (and base screen) per pipeline stage.

The workspace is opened before anything paints; if that fails (missing directory, broken
settings.jsonc, newer database) the app shows an error screen instead of the stages, so the
user gets a readable message and a way out — never a traceback. Heavy libraries are only
imported by the screens' thread workers.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.signal import Signal

from persona_studio.errors import UserError
from persona_studio.tui.screens.base import STAGES
from persona_studio.workspace import NoWorkspace, Workspace


class StudioApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "persona-studio"
    BINDINGS = [
        # The stage bar names every stage with its key, so the footer keeps its room for the
        # current stage's own keys.
        *(Binding(key, f"stage('{mode}')", title, show=False) for mode, key, title, _ in STAGES),
        Binding("ctrl+q", "quit", "Quit", show=True, priority=True),
        Binding("f1", "help", "Help", show=False),
        # Digits type into inputs; escape leaves the input so digits switch stage again.
        Binding("escape", "unfocus", "Leave field", show=False),
        Binding("ctrl+e", "restart_engine", "(Re)start engine", show=False),
    ]

    def __init__(self, workspace: Workspace | None, error: str | None = None, create_at: Path | None = None):
        super().__init__()
        self.workspace = workspace
        self.startup_error = error
        self.create_at = create_at  # no workspace there yet: the error screen offers to create one
        self.engine = None  # the shared inference engine, once started (see ensure_engine)
        self.engine_state = "not started"
        self.engine_error: str | None = None
        # Published with the engine (or None on failure) when a start attempt ends.
        self.engine_signal: Signal[object] = Signal(self, "engine")

    def on_mount(self) -> None:
        if self.workspace is None:
            from persona_studio.tui.screens.error import ErrorScreen

            self.push_screen(ErrorScreen(self.startup_error or "no workspace", self.create_at))
            return
        self.open_stages()

    def create_workspace(self) -> None:
        """The error screen's `i`: a new workspace where the studio was started, then the stages."""
        assert self.create_at is not None
        self.workspace = Workspace.init(self.create_at)
        self.workspace.store().close()
        self.create_at = self.startup_error = None
        self.pop_screen()
        self.open_stages()

    def open_stages(self) -> None:
        assert self.workspace is not None
        for mode, _key, _title, factory in STAGES:
            self.add_mode(mode, factory)
        self.switch_mode("import")
        if self.workspace.settings.engine.backend == "vllm":
            self.run_worker(self._look_for_service, thread=True, group="engine-look", exit_on_error=False)

    def _look_for_service(self) -> None:
        """A warm start: connect now to the engine service that is already up, so the first reply
        doesn't wait for it. Only files are read here (its record, /proc); the connect itself
        checks the service's health, as on any first use."""
        from persona_studio.engine import service

        assert self.workspace is not None
        info = service.read_info(self.workspace)
        if info is None or not service.pid_alive(info.pid):
            return
        self.call_from_thread(self._connect_early)
        # And import the Chat screen here, off the UI thread (~50 ms that the first switch to
        # Chat would otherwise spend there): a warm start is one that is about to chat.
        import persona_studio.tui.screens.chat  # noqa: F401

    def _connect_early(self) -> None:
        if self.engine is None and self.engine_state == "not started":
            self.ensure_engine()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Without a workspace there are no stages: hide their keys from the footer.
        if action == "stage" and self.workspace is None:
            return False
        return True

    async def action_stage(self, mode: str) -> None:
        # Awaited, so keys typed right after the stage key reach the new screen, not the old one.
        if self.workspace is not None and self.current_mode != mode:
            await self.switch_mode(mode)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if self.workspace is None:
            return
        for mode, key, title, _ in STAGES:
            yield SystemCommand(
                f"Go to {title}", f"Switch to the {title} stage (key {key})",
                lambda m=mode: self.run_worker(self.action_stage(m)),
            )
        yield SystemCommand("Preferences", "Preference pairs for DPO/ORPO (also key p on the Train stage)",
                            self.action_prefs)

    def action_prefs(self) -> None:
        from persona_studio.tui.screens.prefs import PrefsScreen

        self.push_screen(PrefsScreen())

    async def action_quit(self) -> None:
        # Without a workspace the studio never opened: every way out says so with exit status 2.
        self.exit(return_code=2 if self.workspace is None else 0)

    def action_unfocus(self) -> None:
        self.set_focus(None)

    def action_help(self) -> None:
        self.notify(
            "Keys 1-6 switch stage (escape leaves a text field first); ctrl+p opens the command palette; "
            "ctrl+e (re)starts the engine; ctrl+q quits (the engine service stays up: "
            "`persona-studio engine stop` ends it).",
            title="Help",
        )

    def ensure_engine(self) -> bool:
        """True when the engine is ready; otherwise start it (once) off the UI thread."""
        if self.engine is not None:
            return True
        if self.engine_state.startswith("starting"):
            return False
        self.engine_error = None
        self.set_engine_state("starting…")
        self.run_worker(self._start_engine, thread=True, exclusive=True, group="engine", exit_on_error=False)
        return False

    def _start_engine(self) -> None:
        from persona_studio.engine import make_engine

        assert self.workspace is not None

        def progress(msg: str, frac: float | None) -> None:
            pct = f" {int(frac * 100)}%" if frac is not None else ""
            self.call_from_thread(self.set_engine_state, f"starting: {msg[:40]}{pct}")

        try:
            engine = make_engine(self.workspace)
            engine.start(progress)
        except Exception as exc:  # noqa: BLE001 - any start failure becomes a message, never a crash
            error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.call_from_thread(self._engine_done, None, error)
            return
        self.call_from_thread(self._engine_done, engine, None)

    def _engine_done(self, engine: object | None, error: str | None) -> None:
        self.engine, self.engine_error = engine, error
        backend = self.workspace.settings.engine.backend if self.workspace else "?"
        pid = getattr(engine, "pid", None)
        ready = f"{backend} ready" + (f" (pid {pid})" if pid else "")
        self.set_engine_state(ready if engine is not None else "failed (ctrl+e retries)")
        if error:
            self.notify(error, title="engine failed to start", severity="error", timeout=15)
        self.engine_signal.publish(engine)

    def action_restart_engine(self) -> None:
        """ctrl+e: start the engine, or restart it (the engine service too) with the current settings."""
        if self.engine_state.startswith("starting"):
            return
        old, self.engine = self.engine, None
        self.set_engine_state("restarting…" if old is not None else "not started")

        def restart() -> None:
            from persona_studio.engine import service
            from persona_studio.workspace import Workspace

            assert self.workspace is not None
            if old is not None:
                old.close()  # type: ignore[attr-defined]
            # settings.jsonc may have changed since the studio opened (that is often why one restarts)
            try:
                self.workspace = Workspace.open(self.workspace.root)
            except Exception as exc:  # noqa: BLE001 - shown, the old settings stay in use
                self.call_from_thread(self.notify, str(exc), title="settings not reloaded", severity="error")
            if self.workspace.settings.engine.backend == "vllm":
                service.stop(self.workspace)
            self.call_from_thread(self._restart_done)

        self.run_worker(restart, thread=True, group="engine-restart", exit_on_error=False)

    def _restart_done(self) -> None:
        self.engine_state = "not started"
        self.ensure_engine()

    def on_unmount(self) -> None:
        engine, self.engine = self.engine, None
        if engine is None:
            return
        try:
            if self.workspace is not None and not self.workspace.settings.engine.keep_running \
                    and hasattr(engine, "stop_service"):
                engine.stop_service()  # type: ignore[attr-defined]
            else:
                engine.close()  # type: ignore[attr-defined] - the service stays up for the next start
        except Exception:  # noqa: BLE001 - shutting down anyway
            pass

    def set_engine_state(self, state: str) -> None:
        self.engine_state = state
        from persona_studio.tui.widgets.status import StatusLine

        for line in self.screen.query(StatusLine):
            line.refresh_status()


def create_app(workspace: str | Path | None) -> StudioApp:
    """The one app factory, used by the CLI and by tests."""
    try:
        ws = Workspace.open(workspace)
        ws.store().close()  # migrate now, and refuse a newer schema before painting stages
    except NoWorkspace as exc:
        return StudioApp(None, str(exc), create_at=exc.path)
    except UserError as exc:
        return StudioApp(None, str(exc))
    return StudioApp(ws)
