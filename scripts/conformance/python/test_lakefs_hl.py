"""The high-level `lakefs` package against `lakefs-fuse serve`: only host and keys are configured."""
import lakefs
import pytest
from lakefs.client import Client
from lakefs.exceptions import ConflictException, NotFoundException, ObjectExistsException, ServerException

from conftest import ACCESS_KEY_ID, SECRET_ACCESS_KEY


@pytest.fixture
def client(server):
    return Client(host=server.endpoint, username=ACCESS_KEY_ID, password=SECRET_ACCESS_KEY)


@pytest.fixture
def repo(client, repo_name):
    return lakefs.Repository(repo_name, client=client).create(storage_namespace=f"local://{repo_name}")


def test_client_reads_server_version(client):
    assert client.version == "1.84.0"


def test_repository_create_is_idempotent_with_exist_ok(client, repo):
    assert repo.properties.default_branch == "main"
    again = lakefs.Repository(repo.id, client=client).create(storage_namespace=f"local://{repo.id}", exist_ok=True)
    assert again.properties.id == repo.id
    with pytest.raises(ConflictException):
        lakefs.Repository(repo.id, client=client).create(storage_namespace=f"local://{repo.id}")
    assert repo.id in [r.id for r in lakefs.repositories(client=client)]


def test_objects_write_read_and_metadata(repo):
    main = repo.branch("main")
    obj = main.object("dir/data.csv").upload(data=b"id,name\n1,a\n", content_type="text/csv",
                                             metadata={"owner": "alice"})
    stat = obj.stat()
    assert stat.size_bytes == 12 and stat.content_type == "text/csv" and stat.metadata == {"owner": "alice"}
    with obj.reader(mode="rb") as reader:
        assert reader.read() == b"id,name\n1,a\n"
    with obj.reader(mode="r") as reader:
        reader.seek(3)
        assert reader.read(4) == "name"
    assert obj.exists()
    assert not main.object("dir/none").exists()
    with pytest.raises(ObjectExistsException):
        main.object("dir/data.csv").upload(data=b"again", mode="x")
    with main.object("dir/written.txt").writer(mode="w") as writer:
        writer.write("written through a writer")
    assert main.object("dir/written.txt").reader(mode="r").read() == "written through a writer"
    assert [o.path for o in main.objects(prefix="dir/")] == ["dir/data.csv", "dir/written.txt"]
    main.object("dir/written.txt").delete()
    assert not main.object("dir/written.txt").exists()
    with pytest.raises(NotFoundException):
        main.object("dir/written.txt").reader().read()


def test_empty_object_reads_empty(repo):
    obj = repo.branch("main").object("empty").upload(data=b"")
    assert obj.reader(mode="rb").read() == b""


def test_branch_commit_merge_tag_diff(repo):
    main = repo.branch("main")
    main.object("a.txt").upload(data="a")
    assert [c.path for c in main.uncommitted()] == ["a.txt"]
    base = main.commit(message="add a", metadata={"source": "test"})
    assert base.get_commit().message == "add a"

    feature = repo.branch("feature").create(source_reference="main")
    assert feature.get_commit().id == base.get_commit().id
    feature.object("b.txt").upload(data="bb")
    feature.commit(message="add b")
    changes = list(main.diff(feature))
    assert [(c.path, c.type) for c in changes] == [("b.txt", "added")]

    merge_id = feature.merge_into(main, message="merge feature")
    assert main.get_commit().id == merge_id
    assert main.object("b.txt").reader(mode="r").read() == "bb"
    assert [c.message for c in main.log(max_amount=2)] == ["merge feature", "add b"]

    tag = repo.tag("v1").create(main)
    assert tag.get_commit().id == merge_id
    assert [t.id for t in repo.tags()] == ["v1"]
    assert repo.ref("v1").object("a.txt").reader(mode="r").read() == "a"

    with pytest.raises(ServerException):
        main.commit(message="nothing to commit")

    main.object("c.txt").upload(data="c")
    main.reset_changes()
    assert list(main.uncommitted()) == []
    assert [b.id for b in repo.branches()] == ["feature", "main"]
    feature.delete()
    assert [b.id for b in repo.branches()] == ["main"]
