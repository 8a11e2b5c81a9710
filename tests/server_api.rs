//! The REST API of `lakefs-fuse serve`, driven over HTTP with reqwest against an in-process server: status codes,
//! bodies and headers as lakefs-api.md specifies them, plus pre-commit/pre-merge webhooks served by a small axum
//! server inside the test.

use std::sync::{Arc, Mutex};

use lakefs_fuse::server::auth::{Credentials, QUICKSTART_ACCESS_KEY_ID, QUICKSTART_SECRET_ACCESS_KEY};
use lakefs_fuse::server::{self, ServerConfig, ServerHandle};
use md5::{Digest, Md5};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};

struct TestServer {
    handle: Option<ServerHandle>,
    base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl TestServer {
    async fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = ServerConfig::new(
            dir.path().to_path_buf(),
            "127.0.0.1:0".parse().unwrap(),
            Credentials::quickstart(),
        );
        let handle = server::start(config).await.expect("server starts");
        let base = handle.base_url();
        TestServer {
            handle: Some(handle),
            base,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    /// An authenticated request.
    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, self.url(path))
            .basic_auth(QUICKSTART_ACCESS_KEY_ID, Some(QUICKSTART_SECRET_ACCESS_KEY))
    }

    async fn json(&self, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self.req(method, path).json(&body).send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self.req(Method::GET, path).send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn create_repo(&self, name: &str) {
        let (status, body) = self
            .json(
                Method::POST,
                "/repositories",
                json!({"name": name, "storage_namespace": format!("local://{name}")}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    async fn upload(&self, repo: &str, branch: &str, path: &str, data: &[u8]) -> Value {
        let response = self
            .req(Method::POST, &format!("/repositories/{repo}/branches/{branch}/objects"))
            .query(&[("path", path)])
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .expect("upload");
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.expect("stats")
    }

    async fn commit(&self, repo: &str, branch: &str, message: &str) -> (StatusCode, Value) {
        self.json(
            Method::POST,
            &format!("/repositories/{repo}/branches/{branch}/commits"),
            json!({"message": message}),
        )
        .await
    }

    async fn stop(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await.expect("shutdown");
        }
    }
}

fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

#[tokio::test]
async fn authentication_and_unknown_endpoints() {
    let server = TestServer::start().await;
    let anonymous = server.http.get(server.url("/repositories")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers().contains_key("x-request-id"));
    assert_eq!(
        anonymous.json::<Value>().await.unwrap(),
        json!({"message": "error authenticating request"})
    );

    let wrong = server
        .http
        .get(server.url("/repositories"))
        .basic_auth(QUICKSTART_ACCESS_KEY_ID, Some("not-the-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let health = server.http.get(server.url("/healthcheck")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::NO_CONTENT);
    let setup = server.http.get(server.url("/setup_lakefs")).send().await.unwrap();
    assert_eq!(setup.json::<Value>().await.unwrap()["state"], "initialized");

    let (status, body) = server.get("/no/such/endpoint").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"message": "invalid API endpoint"}));

    let (status, config) = server.get("/config").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(config["version_config"]["version_context"], "lakeFS");
    assert_eq!(
        config["storage_config"]["blockstore_namespace_ValidityRegex"],
        "^local://"
    );
    assert_eq!(config["storage_config"]["pre_sign_support"], false);
    let (_, user) = server.get("/user").await;
    assert_eq!(user["user"]["id"], "quickstart");

    // A login token works as a Bearer token; a tampered one does not.
    let login = server
        .http
        .post(server.url("/auth/login"))
        .json(&json!({"access_key_id": QUICKSTART_ACCESS_KEY_ID, "secret_access_key": QUICKSTART_SECRET_ACCESS_KEY}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let token = login.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let with_token = server
        .http
        .get(server.url("/repositories"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.status(), StatusCode::OK);
    let tampered = server
        .http
        .get(server.url("/repositories"))
        .bearer_auth(format!("{token}0"))
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status(), StatusCode::UNAUTHORIZED);
    let bad_login = server
        .http
        .post(server.url("/auth/login"))
        .json(&json!({"access_key_id": QUICKSTART_ACCESS_KEY_ID, "secret_access_key": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_login.status(), StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn repository_branch_and_tag_lifecycle() {
    let server = TestServer::start().await;
    server.create_repo("lifecycle").await;
    let (status, _) = server
        .json(
            Method::POST,
            "/repositories",
            json!({"name": "lifecycle", "storage_namespace": "local://other"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = server
        .json(
            Method::POST,
            "/repositories",
            json!({"name": "x", "storage_namespace": "local://x"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "repository name too short");
    let (status, body) = server
        .json(
            Method::POST,
            "/repositories",
            json!({"name": "second", "storage_namespace": "local://lifecycle/"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "namespace already in use: {body}");
    let (status, _) = server
        .json(
            Method::POST,
            "/repositories",
            json!({"name": "s3repo", "storage_namespace": "s3://bucket/x"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "not the local blockstore");
    let (status, _) = server
        .json(Method::POST, "/repositories", json!({"name": "nonamespace"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "missing required field");
    let bad_type = server
        .req(Method::POST, "/repositories")
        .header("content-type", "text/plain")
        .body(r#"{"name":"plain","storage_namespace":"local://plain"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_type.status(), StatusCode::BAD_REQUEST);

    let (status, repo) = server.get("/repositories/lifecycle").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(repo["default_branch"], "main");
    assert_eq!(repo["storage_namespace"], "local://lifecycle");
    let (status, repos) = server.get("/repositories").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(repos["pagination"]["max_per_page"], 1000);
    assert_eq!(repos["results"][0]["id"], "lifecycle");
    let (_, found) = server.get("/repositories?search=cycle").await;
    assert_eq!(found["results"][0]["id"], "lifecycle");
    let (_, none) = server.get("/repositories?search=nomatch").await;
    assert_eq!(none["results"], json!([]));

    let (_, main) = server.get("/repositories/lifecycle/branches/main").await;
    let head = main["commit_id"].as_str().unwrap().to_string();
    assert_eq!(head.len(), 64);

    // Branch creation answers 201 with the commit id as plain text.
    let created = server
        .req(Method::POST, "/repositories/lifecycle/branches")
        .json(&json!({"name": "feature", "source": "main"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    assert!(created.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(created.text().await.unwrap(), head);
    let (status, _) = server
        .json(
            Method::POST,
            "/repositories/lifecycle/branches",
            json!({"name": "feature", "source": "main"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = server
        .json(
            Method::POST,
            "/repositories/lifecycle/branches",
            json!({"name": "other", "source": "nope"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, branches) = server.get("/repositories/lifecycle/branches?amount=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(branches["pagination"]["has_more"], true);
    assert_eq!(branches["pagination"]["next_offset"], "feature");
    let (_, rest) = server
        .get("/repositories/lifecycle/branches?amount=1&after=feature")
        .await;
    assert_eq!(rest["results"][0]["id"], "main");
    assert_eq!(rest["pagination"]["has_more"], false);
    assert_eq!(rest["pagination"]["next_offset"], "");
    let (status, _) = server.get("/repositories/lifecycle/branches?amount=1001").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Hidden branches stay out of listings unless asked for.
    let (status, _) = server
        .json(
            Method::POST,
            "/repositories/lifecycle/branches",
            json!({"name": "_hidden", "source": "main", "hidden": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, visible) = server.get("/repositories/lifecycle/branches").await;
    assert!(!visible["results"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["id"] == "_hidden"));
    let (_, all) = server.get("/repositories/lifecycle/branches?show_hidden=true").await;
    assert!(all["results"].as_array().unwrap().iter().any(|b| b["id"] == "_hidden"));

    let (status, tag) = server
        .json(
            Method::POST,
            "/repositories/lifecycle/tags",
            json!({"id": "v1", "ref": "main"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(tag, json!({"id": "v1", "commit_id": head}));
    let (status, _) = server
        .json(
            Method::POST,
            "/repositories/lifecycle/tags",
            json!({"id": "v1", "ref": "main"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, tags) = server.get("/repositories/lifecycle/tags").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tags["results"][0]["id"], "v1");
    let (status, commit) = server.get("/repositories/lifecycle/commits/v1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(commit["id"], head.as_str());
    assert_eq!(commit["message"], "Repository created");
    let deleted = server
        .req(Method::DELETE, "/repositories/lifecycle/tags/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let (status, _) = server.get("/repositories/lifecycle/tags/v1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let deleted = server
        .req(Method::DELETE, "/repositories/lifecycle/branches/feature")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let refused = server
        .req(Method::DELETE, "/repositories/lifecycle/branches/main")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let (status, body) = server.get("/repositories/lifecycle/branches/feature").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["message"].is_string());

    let deleted = server
        .req(Method::DELETE, "/repositories/lifecycle")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let (status, _) = server.get("/repositories/lifecycle").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn objects_upload_stat_list_and_ranges() {
    let server = TestServer::start().await;
    server.create_repo("objects").await;
    let data = b"0123456789";
    let response = server
        .req(Method::POST, "/repositories/objects/branches/main/objects")
        .query(&[("path", "dir/ten.txt")])
        .header("content-type", "text/plain")
        .header("x-lakefs-meta-owner", "alice")
        .header("x-lakefs-internal-client-mtime", "1700000000")
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let stats: Value = response.json().await.unwrap();
    assert_eq!(stats["checksum"], md5_hex(data).as_str());
    assert_eq!(stats["size_bytes"], 10);
    assert_eq!(stats["path_type"], "object");
    assert_eq!(stats["content_type"], "text/plain");
    assert_eq!(stats["metadata"]["owner"], "alice");
    assert_eq!(stats["metadata"]["::lakefs::client-mtime"], "1700000000");

    // Multipart form with a `content` part, as lakefs-sdk sends it.
    let boundary = "XyZbOuNdArY";
    let form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"content\"; filename=\"m.bin\"\r\n\
         Content-Type: application/x-test\r\n\r\nmultipart body\r\n--{boundary}--\r\n"
    );
    let response = server
        .req(Method::POST, "/repositories/objects/branches/main/objects")
        .query(&[("path", "dir/m.bin")])
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let stats: Value = response.json().await.unwrap();
    assert_eq!(stats["size_bytes"], 14);
    assert_eq!(stats["content_type"], "application/x-test");
    assert_eq!(stats["checksum"], md5_hex(b"multipart body").as_str());

    // Conditional uploads.
    let exists = server
        .req(
            Method::POST,
            "/repositories/objects/branches/main/objects?path=dir/ten.txt",
        )
        .header("if-none-match", "*")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(exists.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(exists.json::<Value>().await.unwrap()["message"], "path already exists");
    let if_match = server
        .req(
            Method::POST,
            "/repositories/objects/branches/main/objects?path=dir/ten.txt",
        )
        .header("if-match", "\"abc\"")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(if_match.status(), StatusCode::NOT_IMPLEMENTED);
    let missing_path = server
        .req(Method::POST, "/repositories/objects/branches/main/objects")
        .body("x")
        .send()
        .await;
    assert_eq!(missing_path.unwrap().status(), StatusCode::BAD_REQUEST);
    let on_tag = server
        .req(Method::POST, "/repositories/objects/branches/nobranch/objects?path=a")
        .body("x")
        .send()
        .await;
    assert_eq!(on_tag.unwrap().status(), StatusCode::NOT_FOUND);

    let (status, stat) = server
        .get("/repositories/objects/refs/main/objects/stat?path=dir/ten.txt")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stat["checksum"], md5_hex(data).as_str());
    let (status, _) = server
        .get("/repositories/objects/refs/main/objects/stat?path=dir/none")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server.get("/repositories/objects/refs/main/objects/stat").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Whole, ranged and unsatisfiable reads.
    let url = "/repositories/objects/refs/main/objects?path=dir/ten.txt";
    let whole = server.req(Method::GET, url).send().await.unwrap();
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.headers()["etag"], format!("\"{}\"", md5_hex(data)).as_str());
    assert!(whole.headers().contains_key("last-modified"));
    assert!(whole.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("ten.txt"));
    assert_eq!(whole.bytes().await.unwrap().as_ref(), data);
    let part = server
        .req(Method::GET, url)
        .header("range", "bytes=2-4")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.headers()["content-range"], "bytes 2-4/10");
    assert_eq!(part.bytes().await.unwrap().as_ref(), b"234");
    let tail = server
        .req(Method::GET, url)
        .header("range", "bytes=-3")
        .send()
        .await
        .unwrap();
    assert_eq!(tail.bytes().await.unwrap().as_ref(), b"789");
    let clamped = server
        .req(Method::GET, url)
        .header("range", "bytes=8-100")
        .send()
        .await
        .unwrap();
    assert_eq!(clamped.headers()["content-range"], "bytes 8-9/10");
    let past = server
        .req(Method::GET, url)
        .header("range", "bytes=10-")
        .send()
        .await
        .unwrap();
    assert_eq!(past.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(past.headers()["content-range"], "bytes */10");
    let multi = server
        .req(Method::GET, url)
        .header("range", "bytes=0-1,3-4")
        .send()
        .await
        .unwrap();
    assert_eq!(multi.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert!(!multi.headers().contains_key("content-range"));
    let head = server
        .req(Method::HEAD, url)
        .header("range", "bytes=0-3")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(head.headers()["content-length"], "4");
    let not_modified = server
        .req(Method::GET, url)
        .header("if-none-match", format!("\"{}\"", md5_hex(data)))
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);

    // A body larger than any in-memory limit streams through, raw and as a multipart part.
    let big: Vec<u8> = (0..6 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let stats = server.upload("objects", "main", "big/raw.bin", &big).await;
    assert_eq!(stats["size_bytes"], big.len());
    assert_eq!(stats["checksum"], md5_hex(&big).as_str());
    let mut form = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"content\"; filename=\"b\"\r\n\r\n")
        .into_bytes();
    form.extend_from_slice(&big);
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let response = server
        .req(
            Method::POST,
            "/repositories/objects/branches/main/objects?path=big/form.bin",
        )
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.json::<Value>().await.unwrap()["checksum"],
        md5_hex(&big).as_str()
    );
    let part = server
        .req(Method::GET, "/repositories/objects/refs/main/objects?path=big/form.bin")
        .header("range", "bytes=5000000-5000009")
        .send()
        .await
        .unwrap();
    assert_eq!(part.bytes().await.unwrap().as_ref(), &big[5_000_000..5_000_010]);
    let deleted = server
        .json(
            Method::POST,
            "/repositories/objects/branches/main/objects/delete",
            json!({"paths": ["big/raw.bin", "big/form.bin"]}),
        )
        .await;
    assert_eq!(deleted.0, StatusCode::OK);

    // Listing: pages of two, then delimiter grouping.
    for name in ["a", "b", "c"] {
        server
            .upload("objects", "main", &format!("flat/{name}"), name.as_bytes())
            .await;
    }
    let (_, page) = server
        .get("/repositories/objects/refs/main/objects/ls?prefix=flat/&amount=2")
        .await;
    assert_eq!(page["results"].as_array().unwrap().len(), 2);
    assert_eq!(page["pagination"]["has_more"], true);
    assert_eq!(page["pagination"]["next_offset"], "flat/b");
    assert_eq!(page["pagination"]["results"], 2);
    let (_, page) = server
        .get("/repositories/objects/refs/main/objects/ls?prefix=flat/&amount=2&after=flat/b")
        .await;
    assert_eq!(page["results"][0]["path"], "flat/c");
    assert_eq!(page["pagination"]["has_more"], false);
    let (_, top) = server
        .get("/repositories/objects/refs/main/objects/ls?delimiter=/")
        .await;
    let paths: Vec<&str> = top["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["dir/", "flat/"]);
    assert_eq!(top["results"][0]["path_type"], "common_prefix");

    // Copy, metadata update, delete and bulk delete.
    let (status, copied) = server
        .json(
            Method::POST,
            "/repositories/objects/branches/main/objects/copy?dest_path=copy.txt",
            json!({"src_path": "dir/ten.txt"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(copied["checksum"], md5_hex(data).as_str());
    let updated = server
        .req(
            Method::PUT,
            "/repositories/objects/branches/main/objects/stat/user_metadata?path=copy.txt",
        )
        .json(&json!({"set": {"k": "v"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), StatusCode::NO_CONTENT);
    let (_, stat) = server
        .get("/repositories/objects/refs/main/objects/stat?path=copy.txt")
        .await;
    assert_eq!(stat["metadata"], json!({"k": "v"}));
    let deleted = server
        .req(
            Method::DELETE,
            "/repositories/objects/branches/main/objects?path=copy.txt",
        )
        .send()
        .await;
    assert_eq!(deleted.unwrap().status(), StatusCode::NO_CONTENT);
    let again = server
        .req(
            Method::DELETE,
            "/repositories/objects/branches/main/objects?path=copy.txt",
        )
        .send()
        .await;
    assert_eq!(
        again.unwrap().status(),
        StatusCode::NO_CONTENT,
        "deleting a missing path succeeds"
    );
    let (status, body) = server
        .json(
            Method::POST,
            "/repositories/objects/branches/main/objects/delete",
            json!({"paths": ["flat/a", "flat/b", "nope"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"errors": []}));
    let too_many: Vec<String> = (0..1001).map(|i| format!("p{i}")).collect();
    let (status, _) = server
        .json(
            Method::POST,
            "/repositories/objects/branches/main/objects/delete",
            json!({"paths": too_many}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, page) = server
        .get("/repositories/objects/refs/main/objects/ls?prefix=flat/")
        .await;
    assert_eq!(page["results"].as_array().unwrap().len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn commit_diff_log_and_merge() {
    let server = TestServer::start().await;
    server.create_repo("history").await;
    server.upload("history", "main", "a.txt", b"one").await;
    let (status, diff) = server.get("/repositories/history/branches/main/diff").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(diff["results"][0]["type"], "added");
    assert_eq!(diff["results"][0]["path"], "a.txt");

    let (status, commit) = server.commit("history", "main", "first").await;
    assert_eq!(status, StatusCode::CREATED, "{commit}");
    assert_eq!(commit["message"], "first");
    assert_eq!(commit["committer"], "quickstart");
    assert_eq!(commit["parents"].as_array().unwrap().len(), 1);
    let (status, body) = server.commit("history", "main", "nothing").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().contains("no changes"), "{body}");

    let (status, log) = server.get("/repositories/history/refs/main/commits").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(log["results"][0]["id"], commit["id"]);
    assert_eq!(log["results"][1]["message"], "Repository created");

    // A feature branch that changes a.txt and adds b.txt merges cleanly.
    server
        .json(
            Method::POST,
            "/repositories/history/branches",
            json!({"name": "feature", "source": "main"}),
        )
        .await;
    server.upload("history", "feature", "b.txt", b"two").await;
    server.commit("history", "feature", "add b").await;
    let (status, diff) = server.get("/repositories/history/refs/main/diff/feature").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        diff["results"][0],
        json!({"type": "added", "path": "b.txt", "path_type": "object", "size_bytes": 3})
    );
    let (_, with_stats) = server
        .get("/repositories/history/refs/main/diff/feature?include_right_stats=true")
        .await;
    assert_eq!(with_stats["results"][0]["right"]["checksum"], md5_hex(b"two").as_str());
    assert!(with_stats["results"][0]["right"]["mtime"].as_i64().unwrap() > 0);
    let (status, base) = server.get("/repositories/history/refs/feature/merge/main").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(base["base_commit_id"], commit["id"]);

    let (status, merged) = server
        .json(Method::POST, "/repositories/history/refs/feature/merge/main", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{merged}");
    let reference = merged["reference"].as_str().unwrap();
    let (_, main) = server.get("/repositories/history/branches/main").await;
    assert_eq!(main["commit_id"], reference);
    let (status, _) = server
        .json(Method::POST, "/repositories/history/refs/feature/merge/main", json!({}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "nothing new to merge");

    // Both sides change a.txt: conflict, answered with a MergeResult body.
    server.upload("history", "feature", "a.txt", b"feature").await;
    server.commit("history", "feature", "feature a").await;
    server.upload("history", "main", "a.txt", b"main").await;
    server.commit("history", "main", "main a").await;
    let (status, body) = server
        .json(Method::POST, "/repositories/history/refs/feature/merge/main", json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body, json!({"reference": ""}));
    let (status, _) = server
        .json(
            Method::POST,
            "/repositories/history/refs/feature/merge/main",
            json!({"strategy": "bogus"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A dirty destination is refused.
    server.upload("history", "main", "dirty.txt", b"x").await;
    let (status, body) = server
        .json(
            Method::POST,
            "/repositories/history/refs/feature/merge/main",
            json!({"strategy": "source-wins"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().contains("dirty"), "{body}");

    // Reset drops the staged change; then source-wins resolves the conflict.
    let reset = server
        .req(Method::PUT, "/repositories/history/branches/main")
        .json(&json!({"type": "reset"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    let (status, _) = server
        .json(
            Method::POST,
            "/repositories/history/refs/feature/merge/main",
            json!({"strategy": "source-wins"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let content = server
        .req(Method::GET, "/repositories/history/refs/main/objects?path=a.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(content.bytes().await.unwrap().as_ref(), b"feature");
    server.stop().await;
}

/// A webhook receiver: `/accept` answers 200, `/reject` answers 400 with an explanation; bodies are recorded.
async fn start_webhook_server() -> (String, Arc<Mutex<Vec<(String, Value)>>>) {
    use axum::routing::post;
    let received: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let accept_log = received.clone();
    let reject_log = received.clone();
    let echo_log = received.clone();
    let app = axum::Router::new()
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                "too late"
            }),
        )
        .route(
            "/echo",
            post(move |uri: axum::http::Uri, headers: axum::http::HeaderMap| async move {
                let token = headers
                    .get("x-token")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let query = uri.query().unwrap_or("").to_string();
                echo_log
                    .lock()
                    .unwrap()
                    .push(("echo".into(), json!({"query": query, "token": token})));
                "ok"
            }),
        )
        .route(
            "/accept",
            post(move |axum::Json(body): axum::Json<Value>| async move {
                accept_log.lock().unwrap().push(("accept".into(), body));
                "ok"
            }),
        )
        .route(
            "/reject",
            post(move |axum::Json(body): axum::Json<Value>| async move {
                reject_log.lock().unwrap().push(("reject".into(), body));
                (
                    axum::http::StatusCode::BAD_REQUEST,
                    "schema check failed: column 'id' is missing",
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), received)
}

fn action_file(name: &str, event: &str, branches: &str, url: &str) -> String {
    format!(
        "name: {name}\non:\n  {event}:\n    branches: [{branches}]\nhooks:\n  - id: check\n    type: webhook\n    \
         properties:\n      url: {url}\n      timeout: 10s\n"
    )
}

#[tokio::test]
async fn webhooks_reject_and_accept() {
    let server = TestServer::start().await;
    let (hooks_url, received) = start_webhook_server().await;
    server.create_repo("hooks").await;

    // A pre-commit hook that rejects: the action file itself is staged, and already applies (§8.2).
    let action = action_file("reject commits", "pre-commit", "main", &format!("{hooks_url}/reject"));
    server
        .upload("hooks", "main", "_lakefs_actions/reject.yaml", action.as_bytes())
        .await;
    let (status, body) = server.commit("hooks", "main", "with hook").await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.starts_with("pre-commit hook aborted, run id '"), "{message}");
    assert!(
        message.contains(
            "hook run id '0000_0000' failed on action 'reject commits' hook 'check': action failed: webhook request \
             failed (status code: 400)"
        ),
        "{message}"
    );
    assert!(message.contains("column 'id' is missing"), "{message}");
    {
        let received = received.lock().unwrap();
        let (kind, payload) = received.last().unwrap();
        assert_eq!(kind, "reject");
        assert_eq!(payload["event_type"], "pre-commit");
        assert_eq!(payload["branch_id"], "main");
        assert_eq!(payload["repository_id"], "hooks");
        assert_eq!(payload["source_ref"], "main");
        assert_eq!(payload["commit_message"], "with hook");
        assert_eq!(payload["action_name"], "reject commits");
    }

    // The failed run and its output are visible through the actions API.
    let (status, runs) = server.get("/repositories/hooks/actions/runs?branch=main").await;
    assert_eq!(status, StatusCode::OK);
    let run = &runs["results"][0];
    assert_eq!(run["status"], "failed");
    assert_eq!(run["event_type"], "pre-commit");
    assert_eq!(run["commit_id"], "");
    let run_id = run["run_id"].as_str().unwrap();
    assert!(message.contains(run_id));
    let (status, hooks) = server
        .get(&format!("/repositories/hooks/actions/runs/{run_id}/hooks"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(hooks["results"][0]["hook_run_id"], "0000_0000");
    assert_eq!(hooks["results"][0]["status"], "failed");
    let output = server
        .req(
            Method::GET,
            &format!("/repositories/hooks/actions/runs/{run_id}/hooks/0000_0000/output"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(output.status(), StatusCode::OK);
    let output = output.text().await.unwrap();
    assert!(
        output.contains("400") && output.contains("column 'id' is missing"),
        "{output}"
    );

    // Replace the hook with an accepting one: the commit goes through and the run records its commit id.
    let action = action_file("reject commits", "pre-commit", "main", &format!("{hooks_url}/accept"));
    server
        .upload("hooks", "main", "_lakefs_actions/reject.yaml", action.as_bytes())
        .await;
    let (status, commit) = server.commit("hooks", "main", "accepted").await;
    assert_eq!(status, StatusCode::CREATED, "{commit}");
    let (_, runs) = server.get("/repositories/hooks/actions/runs").await;
    assert_eq!(runs["results"][0]["status"], "completed");
    assert_eq!(runs["results"][0]["commit_id"], commit["id"]);

    // A pre-merge hook read from the source commit rejects merges into main.
    server
        .json(
            Method::POST,
            "/repositories/hooks/branches",
            json!({"name": "ingest", "source": "main"}),
        )
        .await;
    let action = action_file("schema check", "pre-merge", "'ma*'", &format!("{hooks_url}/reject"));
    server
        .upload("hooks", "ingest", "_lakefs_actions/merge.yaml", action.as_bytes())
        .await;
    server.upload("hooks", "ingest", "data.csv", b"a,b\n").await;
    let (status, body) = server.commit("hooks", "ingest", "ingest").await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "pre-commit hook only applies to main: {body}"
    );
    let (status, body) = server
        .json(Method::POST, "/repositories/hooks/refs/ingest/merge/main", json!({}))
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with("update branch main: pre-merge hook aborted, run id '"),
        "{message}"
    );
    let payload = received.lock().unwrap().last().unwrap().1.clone();
    assert_eq!(payload["event_type"], "pre-merge");
    assert_eq!(payload["branch_id"], "main");
    assert_eq!(payload["merge_source"], "ingest");
    let (_, ingest) = server.get("/repositories/hooks/branches/ingest").await;
    assert_eq!(payload["source_ref"], ingest["commit_id"]);

    // The merge is computed before pre-merge hooks run: an empty or conflicting merge never calls the webhook.
    server
        .json(
            Method::POST,
            "/repositories/hooks/branches",
            json!({"name": "mainline", "source": "ingest"}),
        )
        .await;
    let calls = received.lock().unwrap().len();
    let (status, body) = server
        .json(
            Method::POST,
            "/repositories/hooks/refs/ingest/merge/mainline",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap().contains("no changes"), "{body}");
    for branch in ["ingest", "mainline"] {
        server.upload("hooks", branch, "data.csv", branch.as_bytes()).await;
        let (status, _) = server.commit("hooks", branch, branch).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, body) = server
        .json(
            Method::POST,
            "/repositories/hooks/refs/ingest/merge/mainline",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body, json!({"reference": ""}));
    assert_eq!(
        received.lock().unwrap().len(),
        calls,
        "no webhook call for a merge that cannot happen"
    );

    // An unparsable action file is a server error, not a hook rejection.
    server
        .upload("hooks", "main", "_lakefs_actions/broken.yaml", b"name: [unclosed")
        .await;
    let (status, _) = server.commit("hooks", "main", "broken").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    server.stop().await;
}

#[tokio::test]
async fn revert_hard_reset_and_ref_expressions() {
    let server = TestServer::start().await;
    server.create_repo("undo").await;
    server.upload("undo", "main", "f", b"v1").await;
    let (_, first) = server.commit("undo", "main", "v1").await;
    server.upload("undo", "main", "f", b"v2").await;
    let (_, second) = server.commit("undo", "main", "v2").await;

    let (status, parent) = server.get("/repositories/undo/commits/main~1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(parent["id"], first["id"]);
    let (status, _) = server.get("/repositories/undo/commits/main$").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a staging ref is not a commit");
    let (status, _) = server.get("/repositories/undo/commits/nosuchref").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let old = server
        .req(Method::GET, "/repositories/undo/refs/main~1/objects?path=f")
        .send()
        .await
        .unwrap();
    assert_eq!(old.bytes().await.unwrap().as_ref(), b"v1");

    // Revert the last commit: f is back to v1 in a new commit.
    let reverted = server
        .req(Method::POST, "/repositories/undo/branches/main/revert")
        .json(&json!({"ref": second["id"], "parent_number": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(reverted.status(), StatusCode::NO_CONTENT);
    let current = server
        .req(Method::GET, "/repositories/undo/refs/main/objects?path=f")
        .send()
        .await
        .unwrap();
    assert_eq!(current.bytes().await.unwrap().as_ref(), b"v1");
    let (_, log) = server.get("/repositories/undo/refs/main/commits?amount=1").await;
    assert_eq!(log["pagination"]["has_more"], true);
    assert_ne!(log["results"][0]["id"], second["id"]);
    assert_eq!(
        log["results"][0]["message"],
        format!("Revert {}", second["id"].as_str().unwrap())
    );

    // Cherry-pick v2 back onto main: f is v2 again, with v2's message.
    let (status, picked) = server
        .json(
            Method::POST,
            "/repositories/undo/branches/main/cherry-pick",
            json!({"ref": second["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{picked}");
    assert_eq!(picked["message"], "v2");
    let current = server
        .req(Method::GET, "/repositories/undo/refs/main/objects?path=f")
        .send()
        .await
        .unwrap();
    assert_eq!(current.bytes().await.unwrap().as_ref(), b"v2");

    // Hard reset refuses a dirty branch, then moves the head back.
    server.upload("undo", "main", "g", b"staged").await;
    let dirty = server
        .req(Method::PUT, "/repositories/undo/branches/main/hard_reset")
        .query(&[("ref", "main~2")]);
    assert_eq!(dirty.send().await.unwrap().status(), StatusCode::BAD_REQUEST);
    let reset = server
        .req(Method::PUT, "/repositories/undo/branches/main")
        .json(&json!({"type": "object", "path": "g"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    let (_, diff) = server.get("/repositories/undo/branches/main/diff").await;
    assert_eq!(diff["results"], json!([]));
    let bad_type = server
        .req(Method::PUT, "/repositories/undo/branches/main")
        .json(&json!({"type": "everything"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_type.status(), StatusCode::BAD_REQUEST);
    let missing_ref = server
        .req(Method::PUT, "/repositories/undo/branches/main/hard_reset")
        .send()
        .await
        .unwrap();
    assert_eq!(missing_ref.status(), StatusCode::BAD_REQUEST);
    let hard = server
        .req(Method::PUT, "/repositories/undo/branches/main/hard_reset")
        .query(&[("ref", first["id"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(hard.status(), StatusCode::NO_CONTENT);
    let (_, main) = server.get("/repositories/undo/branches/main").await;
    assert_eq!(main["commit_id"], first["id"]);

    // Two-dot diff against `branch$` includes staged changes.
    server.upload("undo", "main", "h", b"new").await;
    let (status, diff) = server.get("/repositories/undo/refs/main/diff/main$?type=two_dot").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(diff["results"][0]["path"], "h");
    let (status, _) = server.get("/repositories/undo/refs/main/diff/main?type=four_dot").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server.stop().await;
}

#[tokio::test]
async fn webhook_timeouts_properties_and_skipped_hooks() {
    let server = TestServer::start().await;
    let (hooks_url, received) = start_webhook_server().await;
    server.create_repo("props").await;

    // A hook slower than its timeout fails the run.
    let slow = format!(
        "name: slow\non:\n  pre-commit:\nhooks:\n  - id: slow_hook\n    type: webhook\n    properties:\n      \
         url: {hooks_url}/slow\n      timeout: 300ms\n"
    );
    server
        .upload("props", "main", "_lakefs_actions/slow.yaml", slow.as_bytes())
        .await;
    let started = std::time::Instant::now();
    let (status, body) = server.commit("props", "main", "slow").await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    assert!(body["message"].as_str().unwrap().contains("timed out"), "{body}");
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    server
        .req(
            Method::DELETE,
            "/repositories/props/branches/main/objects?path=_lakefs_actions/slow.yaml",
        )
        .send()
        .await
        .unwrap();

    // Query parameters (single and repeated), headers with an environment value, and a hook skipped after a
    // failure in the same action; an unsupported hook type fails its own action.
    std::env::set_var("LAKEFSACTION_TEST_TOKEN", "s3cret");
    let action = format!(
        "name: props\non:\n  pre-commit:\n    branches: [main]\nhooks:\n  - id: echo\n    type: webhook\n    \
         properties:\n      url: {hooks_url}/echo\n      query_params:\n        one: '1'\n        many: [x, y]\n      \
         headers:\n        X-Token: '{{{{ ENV.LAKEFSACTION_TEST_TOKEN }}}}'\n  - id: reject\n    type: webhook\n    \
         properties:\n      url: {hooks_url}/reject\n  - id: after_failure\n    type: webhook\n    properties:\n      \
         url: {hooks_url}/accept\n"
    );
    let lua = "name: lua action\non:\n  pre-commit:\nhooks:\n  - id: script\n    type: lua\n    properties:\n      \
               script: 'print(1)'\n";
    server
        .upload("props", "main", "_lakefs_actions/a.yaml", action.as_bytes())
        .await;
    server
        .upload("props", "main", "_lakefs_actions/b.yaml", lua.as_bytes())
        .await;
    let (status, body) = server.commit("props", "main", "props").await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("2 errors occurred:"), "{message}");
    assert!(
        message.contains("hook run id '0000_0001' failed on action 'props' hook 'reject'"),
        "{message}"
    );
    assert!(
        message.contains("hook run id '0001_0000' failed on action 'lua action' hook 'script'"),
        "{message}"
    );
    assert!(message.contains("not supported"), "{message}");

    let echo = received
        .lock()
        .unwrap()
        .iter()
        .find(|(kind, _)| kind == "echo")
        .unwrap()
        .1
        .clone();
    assert_eq!(echo["token"], "s3cret");
    assert_eq!(echo["query"], "many=x&many=y&one=1");
    assert!(
        !received.lock().unwrap().iter().any(|(kind, _)| kind == "accept"),
        "skipped hook must not run"
    );

    let (_, runs) = server.get("/repositories/props/actions/runs").await;
    let run_id = runs["results"][0]["run_id"].as_str().unwrap().to_string();
    assert_eq!(runs["pagination"]["results"], 2, "the timed-out run and this one");
    let (_, hooks) = server
        .get(&format!("/repositories/props/actions/runs/{run_id}/hooks"))
        .await;
    let statuses: Vec<(&str, &str)> = hooks["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["hook_run_id"].as_str().unwrap(), h["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("0000_0000", "completed"),
            ("0000_0001", "failed"),
            ("0000_0002", "skipped"),
            ("0001_0000", "failed")
        ]
    );
    let output = server
        .req(
            Method::GET,
            &format!("/repositories/props/actions/runs/{run_id}/hooks/0000_0000/output"),
        )
        .send()
        .await
        .unwrap();
    assert!(output.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("0000_0000.log"));
    let output = output.text().await.unwrap();
    assert!(
        output.contains("X-Token: *******") && !output.contains("s3cret"),
        "{output}"
    );
    let (status, _) = server.get("/repositories/props/actions/runs/nosuchrun").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn read_only_repositories_and_branch_protection() {
    let server = TestServer::start().await;
    let (status, repo) = server
        .json(
            Method::POST,
            "/repositories",
            json!({"name": "frozen", "storage_namespace": "local://frozen", "read_only": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(repo["read_only"], true);
    let refused = server
        .req(Method::POST, "/repositories/frozen/branches/main/objects?path=a")
        .body("a")
        .send()
        .await;
    let refused = refused.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["message"],
        "read-only repository"
    );
    let forced = server
        .req(
            Method::POST,
            "/repositories/frozen/branches/main/objects?path=a&force=true",
        )
        .body("a");
    assert_eq!(forced.send().await.unwrap().status(), StatusCode::CREATED);
    let (status, _) = server.commit("frozen", "main", "refused").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = server
        .json(
            Method::POST,
            "/repositories/frozen/branches/main/commits",
            json!({"message": "forced", "force": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = server
        .json(
            Method::POST,
            "/repositories/frozen/branches",
            json!({"name": "b", "source": "main"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = server.get("/repositories/frozen/refs/main/objects/stat?path=a").await;
    assert_eq!(status, StatusCode::OK, "reads are not affected");

    server.create_repo("guarded").await;
    let rules_url = "/repositories/guarded/settings/branch_protection";
    let initial = server.req(Method::GET, rules_url).send().await.unwrap();
    assert_eq!(initial.status(), StatusCode::OK);
    let etag = initial.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(initial.json::<Value>().await.unwrap(), json!([]));
    let stale = server
        .req(Method::PUT, rules_url)
        .header("if-match", "\"stale\"")
        .json(&json!([{"pattern": "ma*"}]));
    assert_eq!(stale.send().await.unwrap().status(), StatusCode::PRECONDITION_FAILED);
    let set = server
        .req(Method::PUT, rules_url)
        .header("if-match", &etag)
        .json(&json!([{"pattern": "ma*"}]));
    assert_eq!(set.send().await.unwrap().status(), StatusCode::NO_CONTENT);
    let (_, rules) = server.get(rules_url).await;
    assert_eq!(rules, json!([{"pattern": "ma*"}]));

    server
        .json(
            Method::POST,
            "/repositories/guarded/branches",
            json!({"name": "work", "source": "main"}),
        )
        .await;
    let write = server
        .req(Method::POST, "/repositories/guarded/branches/main/objects?path=x")
        .body("x")
        .send()
        .await;
    let write = write.unwrap();
    assert_eq!(write.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        write.json::<Value>().await.unwrap()["message"],
        "cannot write to protected branch"
    );
    let (status, body) = server
        .json(
            Method::POST,
            "/repositories/guarded/branches/main/commits",
            json!({"message": "m", "allow_empty": true}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["message"], "cannot commit to protected branch");
    // Merging into a protected branch is allowed.
    server.upload("guarded", "work", "x", b"x").await;
    server.commit("guarded", "work", "x").await;
    let (status, _) = server
        .json(Method::POST, "/repositories/guarded/refs/work/merge/main", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}
