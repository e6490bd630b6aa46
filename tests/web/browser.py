"""Real-browser harness: a live ``cxmine serve`` on a copy of the demo, Debian's Chromium driven by Playwright.

Playwright's own browser download cannot work here (offline machines, Debian), so the tests drive the
system ``chromium`` (``scripts/test.sh`` installs it with apt-get when it can) through ``executable_path``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx
from playwright.sync_api import Browser, Page, ViewportSize

from tests.web.conftest import CXMINE, REPO, demo_env

ScreenSize = Literal["desktop", "phone"]
VIEWPORTS: dict[ScreenSize, ViewportSize] = {
    "desktop": {"width": 1440, "height": 900},
    "phone": {"width": 390, "height": 844},
}
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
NO_CHROMIUM = (
    "no Chromium found for the browser tests: scripts/test.sh installs Debian's package "
    "(apt-get install -y chromium) when it runs as root with apt-get; otherwise install it yourself "
    "or set CXMINE_TEST_CHROMIUM to a Chromium executable"
)


def chromium_executable() -> str | None:
    """The Chromium the tests drive: ``CXMINE_TEST_CHROMIUM``, else ``chromium`` on the PATH."""
    configured = os.environ.get("CXMINE_TEST_CHROMIUM")
    if configured:
        return configured if Path(configured).is_file() else None
    return shutil.which("chromium")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class LiveServer:
    """A ``cxmine serve`` subprocess on its own copy of the demo data directory."""

    base_url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log: Path

    def url(self, path: str) -> str:
        return self.base_url + path

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def cli(self, *args: str, timeout: float = 300) -> str:
        """Run ``cxmine ARGS`` on the server's data directory (e.g. ``score``, as the scheduler would)."""
        done = subprocess.run(
            [*CXMINE, *args],
            env=demo_env(self.data_dir),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, f"cxmine {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def stop(self) -> None:
        """SIGTERM, then kill if it has not stopped within ten seconds."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_live_server(demo_dir: Path, work_dir: Path, *, ready_timeout: float = 300) -> LiveServer:
    """Copy ``demo_dir`` into ``work_dir`` and serve it without the scheduler; waits for ``/readyz``."""
    data_dir = work_dir / "data"
    shutil.copytree(demo_dir, data_dir)
    port = free_port()
    env = demo_env(data_dir) | {"CXMINE_DASHBOARD_EVENTS_POLL_SECONDS": "0.5"}
    log = work_dir / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*CXMINE, "serve", "--host", "127.0.0.1", "--port", str(port), "--no-scheduler"],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(base_url=f"http://127.0.0.1:{port}", data_dir=data_dir, process=process, log=log)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"cxmine serve exited with {process.returncode}:\n{server.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.url("/readyz"), timeout=2).status_code == 200:
                return server
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"cxmine serve was not ready within {ready_timeout:.0f} s:\n{server.log_tail()}")


def watch_page_errors(page: Page) -> list[str]:
    """A list that collects the page's uncaught script errors from now on."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def signed_in_page(browser: Browser, base_url: str, key: str, viewport: ScreenSize = "desktop") -> Page:
    """A page in a fresh browser context, signed in with ``key`` through the real sign-in form."""
    context = browser.new_context(viewport=VIEWPORTS[viewport], base_url=base_url, accept_downloads=True)
    page = context.new_page()
    page.goto("/signin")
    page.fill("#api_key", key)
    with page.expect_navigation():
        page.click("form[action='/signin'] button[type=submit]")
    assert "/signin" not in page.url, f"sign-in failed: {page.locator('#signin-error').all_inner_texts()}"
    return page


def settle(page: Page, *, timeout_ms: float = 10_000) -> None:
    """Wait until the page has loaded and drawn its charts (ECharts animates for about a second)."""
    page.wait_for_load_state("load")
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-chart]')].every(el => el.hasAttribute('data-chart-ready'))",
        timeout=timeout_ms,
    )
    if page.locator("[data-chart]").count():
        page.wait_for_timeout(1200)


def screen_size(page: Page) -> ScreenSize:
    size = page.viewport_size
    return "phone" if size is not None and size["width"] < 800 else "desktop"


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as ``test-artifacts/screenshots/<name>-<desktop|phone>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}-{screen_size(page)}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def horizontal_overflow(page: Page) -> int:
    """How many CSS pixels the page is wider than its viewport (0 when nothing sticks out)."""
    overflow: int = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    return max(0, overflow)
