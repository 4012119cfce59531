"""`make lab` serves the workbook: JupyterLab on notebooks/ with nbgrader's panels."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from netsprint.course.grading import descendants

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[1]
# The venv `make` uses (`make test` exports it; in the VM it is not .venv), else this one.
VENV = Path(os.environ.get("NETSPRINT_VENV") or sys.prefix)


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
    """`make lab` itself, on a free port and make's venv; yields (base URL, token, server pid)."""
    if not (VENV / ".netsprint-pip-stamp").exists():
        # `make lab VENV=...` provisions that venv: never point it at a Python it did not make.
        pytest.skip(f"{VENV} was not made by scripts/provision.sh: run the tests with `make test`")
    port = free_port()
    proc = subprocess.Popen(["make", "--no-print-directory", "lab", f"LAB_PORT={port}",
                             f"VENV={VENV}"],
                            cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # provision.sh runs first (a fraction of a second)
        while time.monotonic() < deadline:
            token_file = VENV / "jupyter-token"
            token = token_file.read_text().strip() if token_file.exists() else ""
            try:
                if token and get(f"{base}/api/status?token={token}")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, "make lab exited early"
            time.sleep(0.3)
        else:
            pytest.fail("make lab did not serve JupyterLab within 120 s")
        yield base, token, proc.pid
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)


def test_lab_serves_the_workbook_with_nbgrader(lab):
    base, token, pid = lab
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

    # JupyterLab terminals inherit the server's PATH, which must start with the venv so
    # `netsprint ...` works there as the README says.
    server = next(p for p in descendants(pid)
                  if b"jupyter" in Path(f"/proc/{p}/cmdline").read_bytes())
    environ = dict(item.split("=", 1) for item in
                   Path(f"/proc/{server}/environ").read_text().split("\0") if "=" in item)
    assert environ["PATH"].split(":")[0] == str(VENV / "bin"), environ["PATH"]
