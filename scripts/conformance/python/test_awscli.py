"""The aws CLI (`aws s3 cp/sync/ls`) against the S3 gateway of `lakefs-fuse serve`.

The CLI runs with its default checksum settings (CRC32 checksums, aws-chunked trailers on newer versions).
"""
import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import ACCESS_KEY_ID, SECRET_ACCESS_KEY
from test_boto3 import create_repository


def aws_binary():
    """The aws CLI next to this Python (a virtualenv), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "aws")
    return beside if os.path.exists(beside) else shutil.which("aws")


@pytest.fixture
def aws(server, tmp_path):
    binary = aws_binary()
    if not binary:
        pytest.skip("aws CLI not installed")
    env = dict(os.environ)
    env.update({
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials"),
    })
    (tmp_path / "aws-config").write_text("[default]\ns3 =\n    addressing_style = path\n")

    def run(*args, check=True):
        result = subprocess.run([binary, "--endpoint-url", server.endpoint, *args], env=env,
                                capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"aws {' '.join(args)} failed: {result.stdout}\n{result.stderr}")
        return result

    return run


@pytest.fixture
def repo(server, repo_name):
    create_repository(server.endpoint, repo_name)
    return repo_name


def test_cp_and_ls(aws, repo, tmp_path):
    src = tmp_path / "hello.txt"
    src.write_text("hello from the aws cli\n")
    aws("s3", "cp", str(src), f"s3://{repo}/main/docs/hello.txt")
    listing = aws("s3", "ls", f"s3://{repo}/main/docs/").stdout
    assert "hello.txt" in listing
    branches = aws("s3", "ls", f"s3://{repo}/").stdout
    assert "PRE main/" in branches
    back = tmp_path / "back.txt"
    aws("s3", "cp", f"s3://{repo}/main/docs/hello.txt", str(back))
    assert back.read_text() == src.read_text()


def test_cp_large_file_uses_multipart(aws, repo, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(20 * 1024 * 1024))
    aws("s3", "cp", str(big), f"s3://{repo}/main/big.bin")
    back = tmp_path / "big.back"
    aws("s3", "cp", f"s3://{repo}/main/big.bin", str(back))
    assert back.read_bytes() == big.read_bytes()


def test_sync_both_ways(aws, repo, tmp_path):
    local = tmp_path / "tree"
    for name in ["a.txt", "sub/b.txt", "sub/deeper/c.txt"]:
        path = local / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"content of {name}\n")
        # lakeFS mtimes have one-second resolution: a file modified in the upload's second would look newer
        # than its copy and be uploaded again by the second sync.
        old = time.time() - 60
        os.utime(path, (old, old))
    aws("s3", "sync", str(local), f"s3://{repo}/main/tree/")
    listing = aws("s3", "ls", "--recursive", f"s3://{repo}/main/tree/").stdout
    for name in ["a.txt", "sub/b.txt", "sub/deeper/c.txt"]:
        assert f"main/tree/{name}" in listing

    # A second sync has nothing to do.
    again = aws("s3", "sync", str(local), f"s3://{repo}/main/tree/").stdout
    assert "upload:" not in again

    copy = tmp_path / "copy"
    aws("s3", "sync", f"s3://{repo}/main/tree/", str(copy))
    for name in ["a.txt", "sub/b.txt", "sub/deeper/c.txt"]:
        assert (copy / name).read_text() == f"content of {name}\n"

    aws("s3", "rm", "--recursive", f"s3://{repo}/main/tree/")
    assert aws("s3", "ls", "--recursive", f"s3://{repo}/main/tree/", check=False).stdout.strip() == ""


def test_missing_object_fails(aws, repo, tmp_path):
    result = aws("s3", "cp", f"s3://{repo}/main/missing", str(tmp_path / "x"), check=False)
    assert result.returncode != 0
