#!/usr/bin/env python3
"""Creates the quickstart sample repository on a lakeFS server through the REST API.

Repository `quickstart`: a few hundred CSV/JSON/Parquet files in several directories, two commits on `main`,
a tag `v1` on the first one, a branch `ingest` with a fresh, uncommitted "sync", and a pre-merge hook
definition under `_lakefs_actions/` (scripts/sample_hook.py answers it in the quickstart).

Parquet files (next to the CSV and JSON they mirror) need pyarrow (`scripts/setup.sh quickstart` installs it
into .venv); without it they are left out and everything else is still created.

With --export DIR it also writes a local "export" (a new day of orders as CSV and Parquet, and a JSON
manifest) into DIR, for the quickstart to copy through the mount and commit with `lakefs-fuse commit`.

usage: sample_repo.py ENDPOINT [ACCESS_KEY_ID SECRET_ACCESS_KEY] [--export DIR]
"""
import argparse
import base64
import io
import json
import os
import random
import urllib.error
import urllib.parse
import urllib.request

try:
    import pyarrow
    import pyarrow.parquet
except ImportError:
    pyarrow = None

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


ORDER_COLUMNS = ["order_id", "customer", "amount", "currency", "created_at"]
PARQUET = "application/vnd.apache.parquet"


def order_records(rng, n, day):
    return [{"order_id": day * 1000 + i, "customer": rng.choice(["acme", "globex", "initech", "umbrella"]),
             "amount": rng.randint(100, 99999) / 100, "currency": "EUR",
             "created_at": f"2026-11-{day:02d}T{i % 24:02d}:00:00Z"} for i in range(n)]


def csv_bytes(records):
    lines = [",".join(ORDER_COLUMNS)]
    for r in records:
        lines.append(f"{r['order_id']},{r['customer']},{r['amount']:.2f},{r['currency']},{r['created_at']}")
    return ("\n".join(lines) + "\n").encode()


def parquet_bytes(records):
    """The records as one Parquet file (snappy), or None without pyarrow."""
    if pyarrow is None:
        return None
    out = io.BytesIO()
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(records), out, compression="snappy")
    return out.getvalue()


def write_export(directory, rng):
    """A new day of orders as a local directory tree, to be copied through the mount."""
    day = 26
    files = {}
    for part in range(4):
        records = order_records(rng, 250, day)
        files[f"orders/2026-11-{day:02d}/part-{part}.csv"] = csv_bytes(records)
        parquet = parquet_bytes(records)
        if parquet is not None:
            files[f"orders/2026-11-{day:02d}/part-{part}.parquet"] = parquet
    files[f"orders/2026-11-{day:02d}/_manifest.json"] = json.dumps(
        {"day": f"2026-11-{day:02d}", "files": sorted(files), "source": "quickstart export"}, indent=2).encode()
    for path, content in files.items():
        target = os.path.join(directory, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(content)
    return len(files)


def main():
    parser = argparse.ArgumentParser(description="Create the quickstart sample repository.")
    parser.add_argument("endpoint")
    parser.add_argument("access_key_id", nargs="?", default="AKIAIOSFOLQUICKSTART")
    parser.add_argument("secret_access_key", nargs="?", default="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    parser.add_argument("--export", metavar="DIR", help="also write a local export to copy through the mount")
    args = parser.parse_args()
    api = Api(args.endpoint, args.access_key_id, args.secret_access_key)
    rng = random.Random(42)
    if args.export:
        count = write_export(args.export, random.Random(7))
        print(f"export: {count} files in {args.export}")
    if pyarrow is None:
        print("pyarrow is not installed: leaving out the Parquet files (scripts/setup.sh quickstart installs it)")

    status, body = api.call("POST", "/repositories", body={"name": REPO, "storage_namespace": f"local://{REPO}",
                                                          "default_branch": "main"})
    if status == 409:
        print(f"repository {REPO} already exists; leaving it as it is")
        return
    if status != 201:
        raise SystemExit(f"create repository: HTTP {status} {body[:200]!r}")

    api.upload("main", "README.md", b"# quickstart\n\nSample data for lakefs-fuse: orders, customers, events.\n")
    for day in range(1, 21):
        records = order_records(rng, 50, day)
        api.upload("main", f"orders/2026-11-{day:02d}/orders.csv", csv_bytes(records), "text/csv")
        parquet = parquet_bytes(records)
        if parquet is not None:
            api.upload("main", f"orders/2026-11-{day:02d}/orders.parquet", parquet, PARQUET)
    customers = []
    for i in range(100):
        doc = {"id": i, "name": f"customer-{i:03d}", "country": rng.choice(["DE", "FR", "NL", "US"]),
               "tier": rng.choice(["free", "pro", "enterprise"])}
        customers.append(doc)
        api.upload("main", f"customers/{i:03d}.json", json.dumps(doc).encode() + b"\n", "application/json")
    parquet = parquet_bytes(customers)
    if parquet is not None:
        api.upload("main", "customers/customers.parquet", parquet, PARQUET)
    first = api.commit("main", "Load orders and customers")
    api.call("POST", f"/repositories/{REPO}/tags", body={"id": "v1", "ref": first})

    all_events = []
    for h in range(24):
        events = [{"hour": h, "event": rng.choice(["view", "click", "buy"]), "user": rng.randint(1, 500)}
                  for _ in range(20)]
        all_events.extend(events)
        lines = "".join(json.dumps(e) + "\n" for e in events)
        api.upload("main", f"events/2026-11-20/{h:02d}.jsonl", lines.encode(), "application/x-ndjson")
    parquet = parquet_bytes(all_events)
    if parquet is not None:
        api.upload("main", "events/2026-11-20/events.parquet", parquet, PARQUET)
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
    synced = 0
    for day in range(21, 26):
        records = order_records(rng, 50, day)
        api.upload("ingest", f"orders/2026-11-{day:02d}/orders.csv", csv_bytes(records), "text/csv")
        synced += 1
        parquet = parquet_bytes(records)
        if parquet is not None:
            api.upload("ingest", f"orders/2026-11-{day:02d}/orders.parquet", parquet, PARQUET)
            synced += 1
    print(f"repository {REPO}: main (2 commits), tag v1, branch ingest with {synced} uncommitted files")


if __name__ == "__main__":
    main()
