"""The real thing: `cxmine` commands in subprocesses and HTTP over a socket to `cxmine serve`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

CXMINE = [sys.executable, "-m", "service.cli"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cxmine(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CXMINE, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    env = {
        **os.environ,
        "CXMINE_DATABASE_URL": database_url,
        "CXMINE_DATA_DIR": str(tmp_path / "var"),
        "CXMINE_LOG_FORMAT": "json",
    }
    port = _free_port()
    process = subprocess.Popen(
        [*CXMINE, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("cxmine serve did not start in 30 s")
        yield base, env
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
        assert '"logger": "cxmine.access"' in output, output[-2000:]


@pytest.mark.slow
def test_serve_ingest_and_read_back_over_http(server: tuple[str, dict[str, str]]) -> None:
    base, env = server
    assert httpx.get(f"{base}/readyz").json()["status"] == "ready"
    created = _cxmine(env, "keys", "create", "--role", "admin", "--name", "smoke", "--quiet")
    assert created.returncode == 0, created.stderr
    headers = {"Authorization": f"Bearer {created.stdout.strip()}"}
    items = [{"text": "ส่งของช้ามากค่ะ", "source": "line-oa", "external_id": "1", "language": "th"}]
    first = httpx.post(f"{base}/v1/feedback", json={"items": items}, headers=headers).json()
    again = httpx.post(f"{base}/v1/feedback", json={"items": items}, headers=headers).json()
    assert (first["stored"], again["duplicates"]) == (1, 1)
    page = httpx.get(f"{base}/v1/feedback", params={"language": "th"}, headers=headers)
    assert page.headers["x-request-id"]
    assert [item["text"] for item in page.json()["items"]] == ["ส่งของช้ามากค่ะ"]
    assert httpx.get(f"{base}/v1/feedback").status_code == 401


@pytest.mark.slow
def test_demo_command_loads_once(database_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "CXMINE_DATABASE_URL": database_url, "CXMINE_DATA_DIR": str(tmp_path / "var")}
    first = _cxmine(env, "demo", "--if-empty")
    assert first.returncode == 0, first.stderr
    assert "stored" in first.stderr
    second = _cxmine(env, "demo", "--if-empty")
    assert second.returncode == 0 and "already stored" in second.stderr
    again_without_guard = _cxmine(env, "demo")
    assert again_without_guard.returncode == 0 and " 0 stored" in again_without_guard.stderr


def test_the_env_example_names_every_setting_and_only_settings() -> None:
    import re
    from pathlib import Path

    from service.config import Settings

    text = (Path(__file__).resolve().parent.parent / ".env.example").read_text(encoding="utf-8")
    named = set(re.findall(r"^# (CXMINE_[A-Z0-9_]+)=", text, flags=re.MULTILINE))
    assert named == {f"CXMINE_{name.upper()}" for name in Settings.model_fields}
