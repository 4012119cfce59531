"""`make lab` serves the workbook: JupyterLab on notebooks/ with nbgrader's panels."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture
def lab():
    """The same server `make lab` starts (see Makefile), on a free port."""
    port, token = free_port(), secrets.token_urlsafe(16)
    jupyter = Path(sys.executable).with_name("jupyter")
    proc = subprocess.Popen(
        [str(jupyter), "lab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         "--ServerApp.root_dir=notebooks"],
        cwd=REPO, env={**os.environ, "JUPYTER_TOKEN": token},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if get(f"{base}/api/status?token={token}")[0] == 200:
                    break
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail("JupyterLab did not answer within 60 s")
        yield base, token
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)


def test_lab_serves_the_workbook_with_nbgrader(lab):
    base, token = lab
    status, page = get(f"{base}/lab?token={token}")
    assert status == 200 and b"JupyterLab" in page
    assert get(f"{base}/lab")[0] in (302, 403), "the server must not be open without its token"

    status, body = get(f"{base}/lab/api/extensions?token={token}")
    assert status == 200
    names = {ext["name"] for ext in json.loads(body)}
    assert "jupyter-nbgrader" in names, names  # the @jupyter/nbgrader lab extension

    status, body = get(f"{base}/api/contents?token={token}")
    listed = {item["name"] for item in json.loads(body)["content"]}
    assert {"week00", "week01"} <= listed, "the lab must open on notebooks/"
