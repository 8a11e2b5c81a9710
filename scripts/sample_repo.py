#!/usr/bin/env python3
"""Creates the quickstart sample repository on a lakeFS server through the REST API (stdlib only).

Repository `quickstart`: a few hundred CSV/JSON files in several directories, two commits on `main`,
a tag `v1` on the first one, a branch `ingest` with a fresh, uncommitted "sync", and a pre-merge hook
definition under `_lakefs_actions/` (its URL is a placeholder that nothing listens on unless you start one).

usage: sample_repo.py ENDPOINT [ACCESS_KEY_ID SECRET_ACCESS_KEY]
"""
import base64
import json
import random
import sys
import urllib.error
import urllib.parse
import urllib.request

REPO = "quickstart"


class Api:
    def __init__(self, endpoint, key, secret):
        self.base = endpoint.rstrip("/") + "/api/v1"
        token = base64.b64encode(f"{key}:{secret}".encode()).decode()
        self.headers = {"Authorization": "Basic " + token}

    def call(self, method, path, body=None, query=None, raw=None, content_type="application/json"):
        url = self.base + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        headers = dict(self.headers)
        if data is not None:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def upload(self, branch, path, content, content_type="text/plain"):
        status, body = self.call("POST", f"/repositories/{REPO}/branches/{branch}/objects",
                                 query={"path": path}, raw=content, content_type=content_type)
        if status != 201:
            raise SystemExit(f"upload {path}: HTTP {status} {body[:200]!r}")

    def commit(self, branch, message):
        status, body = self.call("POST", f"/repositories/{REPO}/branches/{branch}/commits",
                                 body={"message": message})
        if status != 201:
            raise SystemExit(f"commit: HTTP {status} {body[:200]!r}")
        return json.loads(body)["id"]


def csv_rows(rng, n, day):
    lines = ["order_id,customer,amount,currency,created_at"]
    for i in range(n):
        lines.append(f"{day * 1000 + i},{rng.choice(['acme', 'globex', 'initech', 'umbrella'])},"
                     f"{rng.randint(100, 99999) / 100:.2f},EUR,2026-11-{day:02d}T{i % 24:02d}:00:00Z")
    return ("\n".join(lines) + "\n").encode()


def main():
    endpoint = sys.argv[1]
    key = sys.argv[2] if len(sys.argv) > 2 else "AKIAIOSFOLQUICKSTART"
    secret = sys.argv[3] if len(sys.argv) > 3 else "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    api = Api(endpoint, key, secret)
    rng = random.Random(42)

    status, body = api.call("POST", "/repositories", body={"name": REPO, "storage_namespace": f"local://{REPO}",
                                                          "default_branch": "main"})
    if status == 409:
        print(f"repository {REPO} already exists; leaving it as it is")
        return
    if status != 201:
        raise SystemExit(f"create repository: HTTP {status} {body[:200]!r}")

    api.upload("main", "README.md", b"# quickstart\n\nSample data for lakefs-fuse: orders, customers, events.\n")
    for day in range(1, 21):
        api.upload("main", f"orders/2026-11-{day:02d}/orders.csv", csv_rows(rng, 50, day), "text/csv")
    for i in range(100):
        doc = {"id": i, "name": f"customer-{i:03d}", "country": rng.choice(["DE", "FR", "NL", "US"]),
               "tier": rng.choice(["free", "pro", "enterprise"])}
        api.upload("main", f"customers/{i:03d}.json", json.dumps(doc).encode() + b"\n", "application/json")
    first = api.commit("main", "Load orders and customers")
    api.call("POST", f"/repositories/{REPO}/tags", body={"id": "v1", "ref": first})

    for h in range(24):
        events = "".join(json.dumps({"hour": h, "event": rng.choice(["view", "click", "buy"]),
                                     "user": rng.randint(1, 500)}) + "\n" for _ in range(20))
        api.upload("main", f"events/2026-11-20/{h:02d}.jsonl", events.encode(), "application/x-ndjson")
    api.upload("main", "_lakefs_actions/pre-merge-schema.yaml", b"""name: schema check
on:
  pre-merge:
    branches: ["main"]
hooks:
  - id: schema_check
    type: webhook
    properties:
      url: "http://127.0.0.1:8099/schema-check"
      timeout: 10s
""", "application/x-yaml")
    api.commit("main", "Add events and the pre-merge hook definition")

    api.call("POST", f"/repositories/{REPO}/branches", body={"name": "ingest", "source": "main"})
    for day in range(21, 26):
        api.upload("ingest", f"orders/2026-11-{day:02d}/orders.csv", csv_rows(rng, 50, day), "text/csv")
    print(f"repository {REPO}: main (2 commits), tag v1, branch ingest with 5 uncommitted files")


if __name__ == "__main__":
    main()
