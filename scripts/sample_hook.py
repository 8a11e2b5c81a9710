#!/usr/bin/env python3
"""The quickstart's pre-merge webhook: a schema check for orders CSV files.

lakeFS POSTs the hook payload (event_type, repository_id, branch_id, source_ref, ...). This hook reads the
diff of the merge through the REST API and rejects it (HTTP 400 with a reason) when an added or changed
`orders/*.csv` does not start with the expected header. Stdlib only.

usage: sample_hook.py PORT ENDPOINT [ACCESS_KEY_ID SECRET_ACCESS_KEY]
"""
import base64
import json
import sys
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HEADER = b"order_id,customer,amount,currency,created_at"


def main():
    port, endpoint = int(sys.argv[1]), sys.argv[2].rstrip("/") + "/api/v1"
    key = sys.argv[3] if len(sys.argv) > 3 else "AKIAIOSFOLQUICKSTART"
    secret = sys.argv[4] if len(sys.argv) > 4 else "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    auth = "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()

    def get(path, query):
        url = endpoint + path + "?" + urllib.parse.urlencode(query)
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": auth})) as r:
            return r.read()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            event = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            repo, dest, source = event.get("repository_id"), event.get("branch_id"), event.get("source_ref")
            bad = []
            diff = json.loads(get(f"/repositories/{repo}/refs/{dest}/diff/{source}", {"amount": 1000}))
            for d in diff["results"]:
                if d["type"] in ("added", "changed") and d["path"].startswith("orders/") and d["path"].endswith(".csv"):
                    head = get(f"/repositories/{repo}/refs/{source}/objects", {"path": d["path"]})
                    if not head.startswith(HEADER):
                        bad.append(d["path"])
            body = (f"schema check failed: {', '.join(bad)} must start with '{HEADER.decode()}'" if bad
                    else "schema check passed").encode()
            self.send_response(400 if bad else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Hook).serve_forever()


if __name__ == "__main__":
    main()
