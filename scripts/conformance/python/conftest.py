"""Starts one `lakefs-fuse serve` for the whole compat session and hands tests its endpoint.

The official lakeFS clients are used unchanged: only endpoint, keys and path-style addressing are set.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import pytest
import urllib.request

ACCESS_KEY_ID = "AKIAIOSFOLQUICKSTART"
SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary):
        self.binary = binary
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.data_dir = tempfile.mkdtemp(prefix="lakefs-fuse-compat-")
        self.log = open(os.path.join(self.data_dir, "server.log"), "w")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--data-dir", os.path.join(self.data_dir, "data"),
             "--listen", f"127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                with urllib.request.urlopen(self.endpoint + "/api/v1/healthcheck", timeout=1) as r:
                    if r.status == 204:
                        return
            except Exception:
                time.sleep(0.1)
        raise RuntimeError("server did not become healthy in 30 s")

    def stop(self, kill=False):
        if self.proc and self.proc.poll() is None:
            (self.proc.kill if kill else self.proc.terminate)()
            self.proc.wait(timeout=30)


@pytest.fixture(scope="session")
def server():
    binary = os.environ.get("LAKEFS_FUSE_BIN") or shutil.which("lakefs-fuse")
    assert binary, "set LAKEFS_FUSE_BIN to the lakefs-fuse binary"
    srv = Server(binary)
    srv.start()
    yield srv
    srv.stop()
    if os.environ.get("LAKEFS_FUSE_COMPAT_KEEP"):
        print(f"\nserver data and log kept in {srv.data_dir}")
    else:
        shutil.rmtree(srv.data_dir, ignore_errors=True)


@pytest.fixture
def repo_name():
    """A fresh repository name per test, so tests never share state."""
    return "t" + uuid.uuid4().hex[:12]
