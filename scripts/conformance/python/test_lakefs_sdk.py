"""lakefs-sdk (the generated low-level client) against `lakefs-fuse serve`, used exactly as its docs show."""
import hashlib

import lakefs_sdk
import pytest
from lakefs_sdk.client import LakeFSClient
from lakefs_sdk.exceptions import ApiException, NotFoundException

from conftest import ACCESS_KEY_ID, SECRET_ACCESS_KEY


@pytest.fixture
def client(server):
    config = lakefs_sdk.Configuration(host=server.endpoint, username=ACCESS_KEY_ID, password=SECRET_ACCESS_KEY)
    return LakeFSClient(config)


@pytest.fixture
def repo(client, repo_name):
    client.repositories_api.create_repository(
        lakefs_sdk.RepositoryCreation(name=repo_name, storage_namespace=f"local://{repo_name}"))
    return repo_name


def test_config_and_user(client):
    config = client.config_api.get_config()
    assert config.version_config.version_context == "lakeFS"
    assert config.storage_config.blockstore_type == "local"
    assert config.storage_config.pre_sign_support is False
    assert client.auth_api.get_current_user().user.id == "quickstart"
    client.health_check_api.health_check()


def test_wrong_credentials_are_rejected(server):
    config = lakefs_sdk.Configuration(host=server.endpoint, username=ACCESS_KEY_ID, password="wrong")
    with pytest.raises(ApiException) as raised:
        LakeFSClient(config).repositories_api.list_repositories()
    assert raised.value.status == 401


def test_repository_and_branches(client, repo):
    got = client.repositories_api.get_repository(repo)
    assert got.id == repo and got.default_branch == "main" and got.storage_namespace == f"local://{repo}"
    assert repo in [r.id for r in client.repositories_api.list_repositories(amount=1000).results]

    head = client.branches_api.get_branch(repo, "main").commit_id
    created = client.branches_api.create_branch(repo, lakefs_sdk.BranchCreation(name="dev", source="main"))
    assert created == head
    with pytest.raises(ApiException) as raised:
        client.branches_api.create_branch(repo, lakefs_sdk.BranchCreation(name="dev", source="main"))
    assert raised.value.status == 409
    branches = client.branches_api.list_branches(repo)
    assert [b.id for b in branches.results] == ["dev", "main"]
    assert branches.pagination.has_more is False
    client.branches_api.delete_branch(repo, "dev")
    with pytest.raises(NotFoundException):
        client.branches_api.get_branch(repo, "dev")


def test_objects_upload_stat_list_get(client, repo):
    data = b"hello lakefs-fuse\n"
    stats = client.objects_api.upload_object(repo, "main", "data/hello.txt", content=data)
    assert stats.checksum == hashlib.md5(data).hexdigest()
    assert stats.size_bytes == len(data)

    stat = client.objects_api.stat_object(repo, "main", "data/hello.txt")
    assert stat.path == "data/hello.txt" and stat.size_bytes == len(data)
    with pytest.raises(NotFoundException):
        client.objects_api.stat_object(repo, "main", "data/missing")

    for i in range(5):
        client.objects_api.upload_object(repo, "main", f"many/{i}", content=str(i).encode())
    page = client.objects_api.list_objects(repo, "main", prefix="many/", amount=2)
    assert [o.path for o in page.results] == ["many/0", "many/1"]
    assert page.pagination.has_more and page.pagination.next_offset == "many/1"
    rest = client.objects_api.list_objects(repo, "main", prefix="many/", after=page.pagination.next_offset)
    assert [o.path for o in rest.results] == ["many/2", "many/3", "many/4"]
    top = client.objects_api.list_objects(repo, "main", delimiter="/")
    assert [(o.path, o.path_type) for o in top.results] == [("data/", "common_prefix"), ("many/", "common_prefix")]

    assert bytes(client.objects_api.get_object(repo, "main", "data/hello.txt")) == data
    assert bytes(client.objects_api.get_object(repo, "main", "data/hello.txt", range="bytes=6-13")) == data[6:14]

    client.objects_api.delete_object(repo, "main", "many/0")
    errors = client.objects_api.delete_objects(repo, "main", lakefs_sdk.PathList(paths=["many/1", "many/2"]))
    assert errors.errors == []
    left = client.objects_api.list_objects(repo, "main", prefix="many/")
    assert [o.path for o in left.results] == ["many/3", "many/4"]


def test_commit_diff_merge_tags_log(client, repo):
    client.objects_api.upload_object(repo, "main", "a.txt", content=b"a")
    diff = client.branches_api.diff_branch(repo, "main")
    assert [(d.path, d.type) for d in diff.results] == [("a.txt", "added")]
    first = client.commits_api.commit(repo, "main", lakefs_sdk.CommitCreation(message="add a", metadata={"k": "v"}))
    assert first.message == "add a" and first.metadata == {"k": "v"}
    with pytest.raises(ApiException) as raised:
        client.commits_api.commit(repo, "main", lakefs_sdk.CommitCreation(message="empty"))
    assert raised.value.status == 400 and "no changes" in raised.value.body

    client.branches_api.create_branch(repo, lakefs_sdk.BranchCreation(name="feature", source="main"))
    client.objects_api.upload_object(repo, "feature", "b.txt", content=b"bb")
    client.commits_api.commit(repo, "feature", lakefs_sdk.CommitCreation(message="add b"))
    diff = client.refs_api.diff_refs(repo, "main", "feature")
    assert [(d.path, d.type, d.size_bytes) for d in diff.results] == [("b.txt", "added", 2)]
    base = client.refs_api.find_merge_base(repo, "feature", "main")
    assert base.base_commit_id == first.id

    result = client.refs_api.merge_into_branch(repo, "feature", "main", merge=lakefs_sdk.Merge(message="merge it"))
    assert client.branches_api.get_branch(repo, "main").commit_id == result.reference
    merged = client.commits_api.get_commit(repo, result.reference)
    assert merged.message == "merge it" and len(merged.parents) == 2

    log = client.refs_api.log_commits(repo, "main")
    assert log.results[0].id == result.reference
    assert [c.message for c in log.results][-1] == "Repository created"

    tag = client.tags_api.create_tag(repo, lakefs_sdk.TagCreation(id="v1.0", ref="main"))
    assert tag.commit_id == result.reference
    assert [t.id for t in client.tags_api.list_tags(repo).results] == ["v1.0"]
    assert bytes(client.objects_api.get_object(repo, "v1.0", "b.txt")) == b"bb"
    client.tags_api.delete_tag(repo, "v1.0")
    with pytest.raises(NotFoundException):
        client.tags_api.get_tag(repo, "v1.0")


def test_merge_conflict_is_409(client, repo):
    client.objects_api.upload_object(repo, "main", "x", content=b"base")
    client.commits_api.commit(repo, "main", lakefs_sdk.CommitCreation(message="base"))
    client.branches_api.create_branch(repo, lakefs_sdk.BranchCreation(name="other", source="main"))
    for branch in ("main", "other"):
        client.objects_api.upload_object(repo, branch, "x", content=branch.encode())
        client.commits_api.commit(repo, branch, lakefs_sdk.CommitCreation(message=branch))
    with pytest.raises(ApiException) as raised:
        client.refs_api.merge_into_branch(repo, "other", "main")
    assert raised.value.status == 409
