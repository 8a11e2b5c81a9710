"""lakefs-spec (fsspec for lakeFS) against `lakefs-fuse serve`: only host and keys are configured."""
import lakefs
import pytest
from lakefs_spec import LakeFSFileSystem

from conftest import ACCESS_KEY_ID, SECRET_ACCESS_KEY


@pytest.fixture
def fs(server):
    fs = LakeFSFileSystem(host=server.endpoint, username=ACCESS_KEY_ID, password=SECRET_ACCESS_KEY)
    fs.invalidate_cache()
    return fs


@pytest.fixture
def repo(fs, repo_name):
    lakefs.Repository(repo_name, client=fs.client).create(storage_namespace=f"local://{repo_name}")
    return repo_name


def test_write_read_list_remove(fs, repo):
    with fs.open(f"{repo}/main/data/hello.txt", "wt") as f:
        f.write("hello from fsspec\n")
    assert fs.exists(f"{repo}/main/data/hello.txt")
    assert not fs.exists(f"{repo}/main/data/nope.txt")
    assert fs.exists(f"{repo}/main/data")
    with fs.open(f"{repo}/main/data/hello.txt", "rt") as f:
        assert f.read() == "hello from fsspec\n"
    with fs.open(f"{repo}/main/data/hello.txt", "rb") as f:
        f.seek(6)
        assert f.read(4) == b"from"
    assert fs.cat_file(f"{repo}/main/data/hello.txt", start=0, end=5) == b"hello"

    info = fs.info(f"{repo}/main/data/hello.txt")
    assert info["size"] == 18 and info["type"] == "file"
    names = fs.ls(f"{repo}/main/data/", detail=False)
    assert names == [f"{repo}/main/data/hello.txt"]
    top = fs.ls(f"{repo}/main/", detail=True)
    assert [(e["name"].rstrip("/"), e["type"]) for e in top] == [(f"{repo}/main/data", "directory")]

    fs.rm(f"{repo}/main/data/hello.txt")
    fs.invalidate_cache()
    assert not fs.exists(f"{repo}/main/data/hello.txt")


def test_put_and_get_files(fs, repo, tmp_path):
    local = tmp_path / "local.bin"
    payload = bytes(range(256)) * 64
    local.write_bytes(payload)
    fs.put_file(str(local), f"{repo}/main/blobs/local.bin")
    back = tmp_path / "back.bin"
    fs.get_file(f"{repo}/main/blobs/local.bin", str(back))
    assert back.read_bytes() == payload
    # Same content again: lakefs-spec compares checksums and may skip the upload; the object must be unchanged.
    fs.put_file(str(local), f"{repo}/main/blobs/local.bin")
    assert fs.info(f"{repo}/main/blobs/local.bin")["size"] == len(payload)


def test_transaction_commits_and_merges(fs, repo):
    with fs.transaction(repo, "main") as tx:
        with fs.open(f"{repo}/{tx.branch.id}/tx/file.txt", "wb") as f:
            f.write(b"written in a transaction")
        commit = tx.commit(message="Add file in transaction")
        tx.tag(commit, "tx-done")
    main = lakefs.Repository(repo, client=fs.client).branch("main")
    assert main.object("tx/file.txt").reader(mode="rb").read() == b"written in a transaction"
    messages = [c.message for c in main.log(max_amount=3)]
    assert "Add file in transaction" in messages
    # The ephemeral branch is gone after a successful transaction.
    assert [b.id for b in lakefs.Repository(repo, client=fs.client).branches()] == ["main"]
    assert fs.exists(f"{repo}/tx-done/tx/file.txt")
