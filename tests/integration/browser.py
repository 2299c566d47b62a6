"""Headless Chromium driven over the DevTools protocol: wait for text, then screenshot."""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from websockets.sync.client import connect

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--window-size=1400,1000",
    "--remote-debugging-port=0",
)


def chromium() -> str | None:
    """The Chromium executable, if installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def capture(url: str, expect: list[str], png: Path, timeout: float = 60.0) -> str:
    """Open ``url``, wait until its text holds every string of ``expect``, screenshot it.

    Returns the page's visible text (what was there at the deadline when it never
    showed everything).
    """
    exe = chromium()
    assert exe, "chromium is not installed"
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.Popen(
            [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            return _drive(proc, url, expect, png, timeout)
        finally:
            _stop_group(proc)


def _stop_group(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """End Chromium and every helper it forked (they share its new process group).

    Ending only the browser process leaves renderer and utility processes writing into
    the profile for a moment, and removing the profile then fails with "Directory not
    empty".
    """
    deadline = time.monotonic() + grace
    sig = signal.SIGTERM
    while True:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        proc.poll()  # reap the leader so the group can empty
        if time.monotonic() > deadline:
            sig = signal.SIGKILL
        time.sleep(0.1)
    proc.wait(timeout=grace)


def _drive(proc: subprocess.Popen, url: str, expect: list[str], png: Path, timeout: float) -> str:
    assert proc.stderr is not None
    port = None
    for line in proc.stderr:
        found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
        if found:
            port = int(found.group(1))
            break
    assert port, "chromium did not open its DevTools port"
    targets = httpx.get(f"http://127.0.0.1:{port}/json", timeout=10).json()
    page = next(t for t in targets if t["type"] == "page")
    ids = itertools.count(1)
    with connect(page["webSocketDebuggerUrl"], max_size=None) as ws:

        def call(method: str, **params: object) -> dict:
            i = next(ids)
            ws.send(json.dumps({"id": i, "method": method, "params": params}))
            while True:
                msg = json.loads(ws.recv(timeout=30))
                if msg.get("id") == i:
                    return dict(msg.get("result") or {})

        call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            result = call(
                "Runtime.evaluate",
                expression="document.body ? document.body.innerText : ''",
                returnByValue=True,
            )
            text = str(result.get("result", {}).get("value", ""))
            if all(e in text for e in expect):
                break
            time.sleep(0.5)
        time.sleep(1.0)  # let the last render settle before the picture
        png.write_bytes(base64.b64decode(call("Page.captureScreenshot", format="png")["data"]))
        return text
