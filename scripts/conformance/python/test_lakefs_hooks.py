"""Pre-commit and pre-merge webhooks as the official clients see them: a rejecting hook is HTTP 412 carrying the
hook's explanation, and the run's log is readable through the actions API (lakefs-sdk)."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import lakefs
import lakefs_sdk
import pytest
from lakefs.client import Client
from lakefs.exceptions import ServerException
from lakefs_sdk.client import LakeFSClient

from conftest import ACCESS_KEY_ID, SECRET_ACCESS_KEY


@pytest.fixture
def webhook():
    """A webhook on 127.0.0.1: `/reject` answers 400 with a reason, anything else 200; payloads are recorded."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append((self.path, body))
            rejecting = self.path.startswith("/reject")
            self.send_response(400 if rejecting else 200)
            self.end_headers()
            self.wfile.write(b"schema check failed: column 'id' is missing" if rejecting else b"ok")

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", received
    httpd.shutdown()


def action(name, event, url):
    return (f"name: {name}\non:\n  {event}:\n    branches: [main]\nhooks:\n  - id: check\n    type: webhook\n"
            f"    properties:\n      url: {url}\n      timeout: 5s\n")


def test_rejecting_pre_commit_and_pre_merge_hooks(server, repo_name, webhook):
    url, received = webhook
    client = Client(host=server.endpoint, username=ACCESS_KEY_ID, password=SECRET_ACCESS_KEY)
    repo = lakefs.Repository(repo_name, client=client).create(storage_namespace=f"local://{repo_name}")
    main = repo.branch("main")
    main.object("_lakefs_actions/commit.yaml").upload(data=action("commit check", "pre-commit", f"{url}/reject"))

    with pytest.raises(ServerException) as raised:
        main.commit(message="rejected")
    assert raised.value.status_code == 412
    message = raised.value.body["message"]
    assert message.startswith("pre-commit hook aborted, run id '")
    assert "webhook request failed (status code: 400)" in message
    assert "column 'id' is missing" in message
    assert received[-1][1]["event_type"] == "pre-commit" and received[-1][1]["branch_id"] == "main"

    sdk = LakeFSClient(lakefs_sdk.Configuration(host=server.endpoint, username=ACCESS_KEY_ID,
                                                password=SECRET_ACCESS_KEY))
    runs = sdk.actions_api.list_repository_runs(repo_name, branch="main")
    assert runs.results[0].status == "failed" and runs.results[0].event_type == "pre-commit"
    hooks = sdk.actions_api.list_run_hooks(repo_name, runs.results[0].run_id)
    assert [(h.hook_run_id, h.status) for h in hooks.results] == [("0000_0000", "failed")]
    output = sdk.actions_api.get_run_hook_output(repo_name, runs.results[0].run_id, "0000_0000")
    assert b"column 'id' is missing" in bytes(output)

    # Accept commits; reject merges into main with a hook read from the merge source.
    main.object("_lakefs_actions/commit.yaml").upload(data=action("commit check", "pre-commit", f"{url}/accept"))
    main.commit(message="accepted")
    feature = repo.branch("feature").create(source_reference="main")
    feature.object("_lakefs_actions/merge.yaml").upload(data=action("merge check", "pre-merge", f"{url}/reject"))
    feature.object("data.csv").upload(data="id\n1\n")
    feature.commit(message="data")
    with pytest.raises(ServerException) as raised:
        feature.merge_into(main)
    assert raised.value.status_code == 412
    assert raised.value.body["message"].startswith("update branch main: pre-merge hook aborted")
    assert not main.object("data.csv").exists()
