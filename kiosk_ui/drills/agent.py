"""The drill's edge agent: ``station agent`` in a process of its own, as on a station, with
the broker address pointed at the drill's relay."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from firmware.config import StationConfig, dump_toml, load_config


def agent_config(config: StationConfig, broker_url: str, directory: Path) -> Path:
    """The station's configuration with the broker address replaced (the relay)."""
    data = config.model_dump(mode="json")
    data["broker"]["url"] = broker_url
    data["broker"]["allow_plaintext"] = True
    path = directory / "agent.toml"
    path.write_text(dump_toml(data), encoding="utf-8")
    load_config(path)  # what the agent will read must be valid
    return path


class AgentProcess:
    """``station agent`` in a process of its own, as on a station."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kiosk_ui.cli", "agent", "--config", str(self.config_path)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=str(Path(__file__).resolve().parents[2]),
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def log_tail(self, lines: int = 15) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
