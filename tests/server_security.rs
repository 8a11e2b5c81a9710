//! Security of `lakefs-fuse serve`, driven against the real binary over raw HTTP.
//!
//! The server runs as a child process with private keys (not quickstart's) on a loopback port. Requests are
//! written byte for byte over a TCP socket, because the attacks here are exactly what well-behaved HTTP clients
//! refuse to send: `..` segments left in the request target, percent-encoded traversal, NUL bytes, oversized
//! headers. SigV4 is computed by a small signer in this file, so a request can be signed correctly and then
//! damaged in one controlled way.
//!
//! What must hold:
//! - every REST endpoint family and every gateway operation refuses missing, wrong, unknown, malformed and
//!   tampered credentials, and the refusal leaves the store unchanged (a positive control proves each request
//!   would otherwise have been understood);
//! - presigned URLs stop working once expired and when any signed part is changed;
//! - no repository name, ref, object key or upload id reaches the filesystem outside `--data-dir`;
//! - JSON and XML bodies, headers and request targets have size limits, and hitting one leaves the server up;
//! - lakeFS quickstart's public keys are refused off loopback unless explicitly allowed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use hmac::Mac;
use lakefs_fuse::server::auth::{QUICKSTART_ACCESS_KEY_ID, QUICKSTART_SECRET_ACCESS_KEY};
use sha2::Digest;

const KEY: &str = "AKIASECURITYTESTKEY1";
const SECRET: &str = "security-test-secret-0123456789abcdefghij";
const REPO: &str = "repo";
const GATEWAY_HOST: &str = "s3.local.lakefs.io";

// ---- the server process ----

/// `lakefs-fuse serve` as a child process; killed on drop. The data directory sits three levels below `root`, so
/// a traversal of up to three `..` lands in a directory the test inspects, and deeper ones in `/`.
struct Serve {
    child: Child,
    addr: String,
    root: tempfile::TempDir,
}

impl Serve {
    fn start() -> Serve {
        let root = tempfile::tempdir().unwrap();
        let data_dir = root.path().join("a/b/data");
        std::fs::create_dir_all(&data_dir).unwrap();
        let mut child = serve_command(&data_dir, "127.0.0.1:0")
            .env("LAKEFS_FUSE_ACCESS_KEY_ID", KEY)
            .env("LAKEFS_FUSE_SECRET_ACCESS_KEY", SECRET)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start lakefs-fuse serve");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected ready line {line:?}"))
            .to_string();
        let serve = Serve { child, addr, root };
        serve.setup();
        serve
    }

    /// Repository `repo` with `obj` committed on main.
    fn setup(&self) {
        let body = format!(r#"{{"name":"{REPO}","storage_namespace":"local://{REPO}","default_branch":"main"}}"#);
        let r = self.rest("POST", "/repositories", &body, Some(basic(KEY, SECRET)));
        assert_eq!(r.status, 201, "{}", r.body);
        let r = self.s3_put("main/obj", b"original");
        assert_eq!(r.status, 200, "{}", r.body);
        let r = self.rest(
            "POST",
            &format!("/repositories/{REPO}/branches/main/commits"),
            r#"{"message":"first"}"#,
            Some(basic(KEY, SECRET)),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }

    fn send(&self, request: &[u8]) -> Reply {
        raw(&self.addr, request)
    }

    /// A REST call with an optional `Authorization` value.
    fn rest(&self, method: &str, path: &str, body: &str, authorization: Option<String>) -> Reply {
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        if let Some(value) = authorization {
            headers.push(("authorization".to_string(), value));
        }
        self.send(&http_request(
            method,
            &format!("/api/v1{path}"),
            &headers,
            body.as_bytes(),
        ))
    }

    /// A correctly signed path-style S3 request.
    fn s3(&self, method: &str, target: &str, extra: &[(&str, &str)], body: &[u8]) -> Reply {
        let signed = sign(&SignSpec::new(method, target, extra, body), KEY, SECRET);
        self.send(&http_request(method, target, &signed, body))
    }

    fn s3_put(&self, key: &str, body: &[u8]) -> Reply {
        self.s3("PUT", &format!("/{REPO}/{key}"), &[], body)
    }

    fn s3_get(&self, key: &str) -> Reply {
        self.s3("GET", &format!("/{REPO}/{key}"), &[], b"")
    }

    fn alive(&self) -> bool {
        self.rest("GET", "/healthcheck", "", None).status == 204
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_command(data_dir: &Path, listen: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lakefs-fuse"));
    command
        .args(["serve", "--data-dir"])
        .arg(data_dir)
        .args(["--listen", listen])
        .env_remove("LAKEFS_FUSE_ACCESS_KEY_ID")
        .env_remove("LAKEFS_FUSE_SECRET_ACCESS_KEY")
        .env_remove("LAKEFS_FUSE_LISTEN")
        .env("RUST_LOG", "warn");
    command
}

// ---- raw HTTP ----

#[derive(Debug)]
struct Reply {
    /// 0 when the server closed the connection without a response.
    status: u16,
    body: String,
}

fn http_request(method: &str, target: &str, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\n").into_bytes();
    if !headers.iter().any(|(n, _)| n == "host") {
        out.extend_from_slice(b"host: localhost\r\n");
    }
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

/// Sends one request and reads the whole response (the connection is closed by `connection: close`).
fn raw(addr: &str, request: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // The server may answer (413, 431) and close before the whole request is written: that is fine.
    let _ = stream.write_all(request);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .filter(|_| text.starts_with("HTTP/1.1 "))
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Reply { status, body }
}

fn basic(key: &str, secret: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}"));
    format!("Basic {token}")
}

// ---- SigV4 ----

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

const AWS_QUERY_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| {
            (
                percent_encoding::utf8_percent_encode(&k, AWS_QUERY_SET).to_string(),
                percent_encoding::utf8_percent_encode(&v, AWS_QUERY_SET).to_string(),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

struct SignSpec<'a> {
    method: &'a str,
    /// Request target as sent: the raw path is also the canonical URI (the server accepts either form).
    target: &'a str,
    extra: &'a [(&'a str, &'a str)],
    payload_hash: String,
    /// Signing time offset from now, in seconds.
    skew: i64,
}

impl<'a> SignSpec<'a> {
    fn new(method: &'a str, target: &'a str, extra: &'a [(&'a str, &'a str)], body: &[u8]) -> Self {
        SignSpec {
            method,
            target,
            extra,
            payload_hash: sha256_hex(body),
            skew: 0,
        }
    }
}

fn amz_date(skew: i64) -> String {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    (time::OffsetDateTime::now_utc() + time::Duration::seconds(skew))
        .format(format)
        .unwrap()
}

/// Header-form SigV4 with `host: s3.local.lakefs.io`; returns every header to send, `authorization` last.
fn sign(spec: &SignSpec, key: &str, secret: &str) -> Vec<(String, String)> {
    let date = amz_date(spec.skew);
    let scope = format!("{}/us-east-1/s3/aws4_request", &date[..8]);
    let (path, query) = spec.target.split_once('?').unwrap_or((spec.target, ""));
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), GATEWAY_HOST.into()),
        ("x-amz-content-sha256".into(), spec.payload_hash.clone()),
        ("x-amz-date".into(), date.clone()),
    ];
    headers.extend(spec.extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let signed_headers = headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(";");
    let canonical_request = format!(
        "{}\n{path}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        spec.method,
        canonical_query(query),
        spec.payload_hash
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let mut signing_key = format!("AWS4{secret}").into_bytes();
    for part in scope.split('/') {
        signing_key = hmac_sha256(&signing_key, part.as_bytes());
    }
    let signature = hex::encode(hmac_sha256(&signing_key, string_to_sign.as_bytes()));
    headers.push((
        "authorization".into(),
        format!("AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"),
    ));
    headers
}

/// Flips the last hex digit of the signature in an `authorization` header.
fn tamper_signature(headers: &mut [(String, String)]) {
    let auth = &mut headers.last_mut().unwrap().1;
    let last = auth.pop().unwrap();
    auth.push(if last == '0' { '1' } else { '0' });
}

// ---- tests ----

/// One row of the REST table: a request of every endpoint family.
const REST_ROUTES: &[(&str, &str, &str)] = &[
    ("GET", "/repositories", ""),
    (
        "POST",
        "/repositories",
        r#"{"name":"evil","storage_namespace":"local://evil"}"#,
    ),
    ("GET", "/repositories/repo", ""),
    ("DELETE", "/repositories/repo", ""),
    ("GET", "/repositories/repo/metadata", ""),
    ("GET", "/repositories/repo/branches", ""),
    (
        "POST",
        "/repositories/repo/branches",
        r#"{"name":"evil","source":"main"}"#,
    ),
    ("GET", "/repositories/repo/branches/main", ""),
    ("DELETE", "/repositories/repo/branches/main", ""),
    ("PUT", "/repositories/repo/branches/main/hard_reset?ref=main", ""),
    (
        "POST",
        "/repositories/repo/branches/main/revert",
        r#"{"ref":"main","parent_number":0}"#,
    ),
    (
        "POST",
        "/repositories/repo/branches/main/cherry-pick",
        r#"{"ref":"main"}"#,
    ),
    ("GET", "/repositories/repo/branches/main/diff", ""),
    (
        "POST",
        "/repositories/repo/branches/main/commits",
        r#"{"message":"evil"}"#,
    ),
    ("GET", "/repositories/repo/branches/main/staging/backing", ""),
    ("POST", "/repositories/repo/branches/main/import", "{}"),
    ("GET", "/repositories/repo/commits/main", ""),
    ("GET", "/repositories/repo/refs/main/commits", ""),
    ("GET", "/repositories/repo/refs/main/diff/main", ""),
    ("POST", "/repositories/repo/refs/main/merge/main", "{}"),
    ("GET", "/repositories/repo/refs/main/objects?path=obj", ""),
    ("GET", "/repositories/repo/refs/main/objects/stat?path=obj", ""),
    ("GET", "/repositories/repo/refs/main/objects/ls", ""),
    ("POST", "/repositories/repo/branches/main/objects?path=evil", "evil"),
    ("DELETE", "/repositories/repo/branches/main/objects?path=obj", ""),
    (
        "POST",
        "/repositories/repo/branches/main/objects/copy?dest_path=evil",
        r#"{"src_path":"obj"}"#,
    ),
    (
        "POST",
        "/repositories/repo/branches/main/objects/delete",
        r#"{"paths":["obj"]}"#,
    ),
    ("GET", "/repositories/repo/tags", ""),
    ("POST", "/repositories/repo/tags", r#"{"id":"evil","ref":"main"}"#),
    ("GET", "/repositories/repo/tags/v1", ""),
    ("DELETE", "/repositories/repo/tags/v1", ""),
    ("GET", "/repositories/repo/settings/branch_protection", ""),
    ("PUT", "/repositories/repo/settings/branch_protection", "[]"),
    ("GET", "/repositories/repo/actions/runs", ""),
    ("GET", "/config", ""),
    ("GET", "/config/version", ""),
    ("GET", "/config/storage", ""),
    ("GET", "/user", ""),
    ("GET", "/auth/users/quickstart/credentials", ""),
    ("GET", "/auth/users/quickstart/credentials/AKIASECURITYTESTKEY1", ""),
    ("POST", "/statistics", "{}"),
];

#[test]
fn rest_endpoints_refuse_bad_credentials() {
    let s = Serve::start();
    let wrong_credentials = [
        ("none", None),
        ("wrong secret", Some(basic(KEY, "not-the-secret"))),
        ("unknown key", Some(basic("AKIAUNKNOWN", SECRET))),
        ("secret as key", Some(basic(SECRET, KEY))),
        ("empty pair", Some(basic("", ""))),
        (
            "quickstart keys",
            Some(basic(QUICKSTART_ACCESS_KEY_ID, QUICKSTART_SECRET_ACCESS_KEY)),
        ),
        ("basic not base64", Some("Basic !!!".to_string())),
        (
            "basic no colon",
            Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(KEY)
            )),
        ),
        ("bearer garbage", Some("Bearer eyJhbGciOiJub25lIn0.e30.".to_string())),
        ("other scheme", Some(format!("Digest {KEY}"))),
        (
            "sigv4 header",
            Some(format!("AWS4-HMAC-SHA256 Credential={KEY}/x, Signature=00")),
        ),
    ];
    for (method, path, body) in REST_ROUTES {
        for (name, wrong) in &wrong_credentials {
            let r = s.rest(method, path, body, wrong.clone());
            assert!(
                r.status == 401 || (matches!(r.status, 400 | 403) && *name == "sigv4 header"),
                "{method} {path} with {name}: {} {}",
                r.status,
                r.body
            );
        }
        let cookie = s.send(&http_request(
            method,
            &format!("/api/v1{path}"),
            &[("cookie".to_string(), "internal_auth_session=forged".to_string())],
            body.as_bytes(),
        ));
        assert_eq!(cookie.status, 401, "{method} {path} with a forged session cookie");
    }
    // Nothing was changed by the refused requests.
    let authorized = || Some(basic(KEY, SECRET));
    assert_eq!(s.s3_get("main/obj").body, "original");
    assert_eq!(s.s3_get("main/evil").status, 404);
    assert_eq!(s.rest("GET", "/repositories/evil", "", authorized()).status, 404);
    assert_eq!(
        s.rest("GET", "/repositories/repo/branches/evil", "", authorized())
            .status,
        404
    );
    assert_eq!(
        s.rest("GET", "/repositories/repo/tags/evil", "", authorized()).status,
        404
    );
    let log = s.rest("GET", "/repositories/repo/refs/main/commits", "", authorized());
    assert!(!log.body.contains("evil"), "{}", log.body);
    // The positive control: with the right key each reading route answers, so the table names real routes.
    for (method, path, body) in REST_ROUTES.iter().filter(|(m, _, _)| *m == "GET") {
        let ok = s.rest(method, path, body, authorized());
        assert!(
            matches!(ok.status, 200 | 400 | 404),
            "{method} {path}: {} {}",
            ok.status,
            ok.body
        );
        assert!(
            !ok.body.contains("invalid API endpoint"),
            "{method} {path} is not a route"
        );
    }
    // A session token works only as issued: a token with one character changed is refused.
    let login = s.rest(
        "POST",
        "/auth/login",
        &format!(r#"{{"access_key_id":"{KEY}","secret_access_key":"{SECRET}"}}"#),
        None,
    );
    assert_eq!(login.status, 200, "{}", login.body);
    let token: serde_json::Value = serde_json::from_str(&login.body).unwrap();
    let token = token["token"].as_str().unwrap().to_string();
    assert_eq!(
        s.rest("GET", "/repositories", "", Some(format!("Bearer {token}")))
            .status,
        200
    );
    let mut forged = token.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert_eq!(
        s.rest("GET", "/repositories", "", Some(format!("Bearer {forged}")))
            .status,
        401
    );
    let wrong_login = s.rest(
        "POST",
        "/auth/login",
        &format!(r#"{{"access_key_id":"{KEY}","secret_access_key":"wrong"}}"#),
        None,
    );
    assert_eq!(wrong_login.status, 401, "{}", wrong_login.body);
}

/// Name, method, request target, extra signed headers, body.
type GatewayOperation<'a> = (&'a str, &'a str, String, &'a [(&'a str, &'a str)], Vec<u8>);

#[test]
fn gateway_operations_refuse_bad_signatures() {
    let s = Serve::start();
    let created = s.s3("POST", "/repo/main/mp?uploads", &[], b"");
    assert_eq!(created.status, 200, "{}", created.body);
    let upload_id = created
        .body
        .split("<UploadId>")
        .nth(1)
        .and_then(|r| r.split("</UploadId>").next())
        .unwrap()
        .to_string();
    let part = format!("/repo/main/mp?partNumber=1&uploadId={upload_id}");
    let upload = format!("/repo/main/mp?uploadId={upload_id}");
    let delete_xml = b"<Delete><Object><Key>main/obj</Key></Object></Delete>".to_vec();
    let complete_xml = b"<CompleteMultipartUpload></CompleteMultipartUpload>".to_vec();
    let copy: &[(&str, &str)] = &[("x-amz-copy-source", "repo/main/obj")];
    let none: &[(&str, &str)] = &[];
    let operations: Vec<GatewayOperation> = vec![
        ("ListBuckets", "GET", "/".into(), none, vec![]),
        ("HeadBucket", "HEAD", "/repo".into(), none, vec![]),
        ("CreateBucket", "PUT", "/newrepo".into(), none, vec![]),
        ("GetBucketLocation", "GET", "/repo?location".into(), none, vec![]),
        ("GetBucketVersioning", "GET", "/repo?versioning".into(), none, vec![]),
        ("ListObjects", "GET", "/repo".into(), none, vec![]),
        ("ListObjectsV2", "GET", "/repo?list-type=2".into(), none, vec![]),
        ("ListMultipartUploads", "GET", "/repo?uploads".into(), none, vec![]),
        ("DeleteObjects", "POST", "/repo?delete".into(), none, delete_xml),
        ("HeadObject", "HEAD", "/repo/main/obj".into(), none, vec![]),
        ("GetObject", "GET", "/repo/main/obj".into(), none, vec![]),
        ("GetObjectTagging", "GET", "/repo/main/obj?tagging".into(), none, vec![]),
        ("PutObject", "PUT", "/repo/main/new".into(), none, b"evil".to_vec()),
        ("CopyObject", "PUT", "/repo/main/copy".into(), copy, vec![]),
        ("DeleteObject", "DELETE", "/repo/main/obj".into(), none, vec![]),
        (
            "CreateMultipartUpload",
            "POST",
            "/repo/main/mp2?uploads".into(),
            none,
            vec![],
        ),
        ("UploadPart", "PUT", part.clone(), none, b"evil".to_vec()),
        ("UploadPartCopy", "PUT", part.clone(), copy, vec![]),
        ("CompleteMultipartUpload", "POST", upload.clone(), none, complete_xml),
        ("AbortMultipartUpload", "DELETE", upload.clone(), none, vec![]),
        ("ListParts", "GET", upload.clone(), none, vec![]),
    ];
    for (name, method, target, extra, body) in &operations {
        let attempt = |headers: Vec<(String, String)>| s.send(&http_request(method, target, &headers, body));
        let spec = SignSpec::new(method, target, extra, body);
        let mut cases: Vec<(&str, Vec<(String, String)>)> = vec![
            ("unsigned", vec![("host".into(), GATEWAY_HOST.into())]),
            ("wrong secret", sign(&spec, KEY, "not-the-secret")),
            ("unknown key", sign(&spec, "AKIAUNKNOWN", SECRET)),
            (
                "quickstart keys",
                sign(&spec, QUICKSTART_ACCESS_KEY_ID, QUICKSTART_SECRET_ACCESS_KEY),
            ),
        ];
        let mut tampered = sign(&spec, KEY, SECRET);
        tamper_signature(&mut tampered);
        cases.push(("tampered signature", tampered));
        let mut stale = SignSpec::new(method, target, extra, body);
        stale.skew = -20 * 60;
        cases.push(("signed 20 minutes ago", sign(&stale, KEY, SECRET)));
        // Signed for another body: the payload hash no longer matches what is sent.
        let mut other_payload = SignSpec::new(method, target, extra, b"something else");
        other_payload.payload_hash = sha256_hex(b"something else");
        if !body.is_empty() {
            cases.push(("signed for another body", sign(&other_payload, KEY, SECRET)));
        }
        // Signed for another target, replayed here.
        cases.push((
            "signed for another key",
            sign(&SignSpec::new(method, "/repo/main/other", extra, body), KEY, SECRET),
        ));
        let mut v2 = vec![("host".to_string(), GATEWAY_HOST.to_string())];
        v2.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        v2.push(("date".into(), httpdate::fmt_http_date(std::time::SystemTime::now())));
        v2.push((
            "authorization".into(),
            format!("AWS {KEY}:AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        ));
        cases.push(("sigv2 wrong signature", v2));
        for (case, headers) in cases {
            let r = attempt(headers);
            assert!(
                matches!(r.status, 400 | 403),
                "{name} ({method} {target}) {case}: {} {}",
                r.status,
                r.body
            );
            if *method != "HEAD" {
                assert!(r.body.contains("<Code>"), "{name} {case}: not an S3 error: {}", r.body);
            }
        }
    }
    // Nothing above changed anything.
    assert_eq!(s.s3_get("main/obj").body, "original");
    assert_eq!(s.s3_get("main/new").status, 404);
    assert_eq!(s.s3_get("main/copy").status, 404);
    assert_eq!(s.s3("HEAD", "/newrepo", &[], b"").status, 404);
    let parts = s.s3("GET", &upload, &[], b"");
    assert_eq!(parts.status, 200, "{}", parts.body);
    assert!(!parts.body.contains("<Part>"), "a part was uploaded: {}", parts.body);
    // The positive controls: the same requests correctly signed work.
    assert_eq!(s.s3("GET", "/repo?list-type=2", &[], b"").status, 200);
    assert_eq!(s.s3_put("main/new", b"fine").status, 200);
    assert_eq!(s.s3("DELETE", &upload, &[], b"").status, 204);
}

#[test]
fn presigned_urls_expire_and_cannot_be_altered() {
    let s = Serve::start();
    let presign = |target: &str, expires: i64, skew: i64| -> String {
        let date = amz_date(skew);
        let scope = format!("{}/us-east-1/s3/aws4_request", &date[..8]);
        let credential = format!("{KEY}/{scope}");
        let query = format!(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={}&X-Amz-Date={date}&X-Amz-Expires={expires}\
             &X-Amz-SignedHeaders=host",
            percent_encoding::utf8_percent_encode(&credential, AWS_QUERY_SET)
        );
        let canonical_request = format!(
            "GET\n{target}\n{}\nhost:{GATEWAY_HOST}\n\nhost\nUNSIGNED-PAYLOAD",
            canonical_query(&query)
        );
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
            sha256_hex(canonical_request.as_bytes())
        );
        let mut key = format!("AWS4{SECRET}").into_bytes();
        for part in scope.split('/') {
            key = hmac_sha256(&key, part.as_bytes());
        }
        let signature = hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()));
        format!("{target}?{query}&X-Amz-Signature={signature}")
    };
    let get = |url: &str| s.send(&http_request("GET", url, &[("host".into(), GATEWAY_HOST.into())], b""));
    let fresh = presign("/repo/main/obj", 300, 0);
    let r = get(&fresh);
    assert_eq!((r.status, r.body.as_str()), (200, "original"));

    let expired = presign("/repo/main/obj", 60, -3600);
    let r = get(&expired);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("expired"), "{}", r.body);

    // Every signed part of the URL is covered: expiry, date, path, credential, signature.
    let tampered = [
        (
            "longer expiry",
            expired.replace("X-Amz-Expires=60", "X-Amz-Expires=604800"),
        ),
        ("other key", fresh.replace("/repo/main/obj?", "/repo/main/ob?")),
        ("other signature", {
            let mut url = fresh.clone();
            let last = url.pop().unwrap();
            url.push(if last == '0' { '1' } else { '0' });
            url
        }),
        (
            "no signature",
            fresh.split("&X-Amz-Signature").next().unwrap().to_string(),
        ),
        ("other access key", fresh.replace(KEY, "AKIAUNKNOWN")),
        ("later date", {
            let date = amz_date(0);
            let later = amz_date(120);
            fresh.replace(&format!("X-Amz-Date={date}"), &format!("X-Amz-Date={later}"))
        }),
    ];
    for (case, url) in tampered {
        assert_ne!(url, fresh, "{case}: the URL was not changed");
        let r = get(&url);
        assert!(matches!(r.status, 400 | 403), "{case}: {} {}", r.status, r.body);
    }
    // lakeFS (like S3) caps presigned lifetimes at 7 days.
    let r = get(&presign("/repo/main/obj", 604_801, 0));
    assert!(matches!(r.status, 400 | 403), "{} {}", r.status, r.body);
}

/// Every file under `root`, relative to it.
fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            out.push(path.strip_prefix(root).unwrap().to_path_buf());
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    out
}

#[test]
fn names_never_escape_the_data_dir() {
    let s = Serve::start();
    let marker = format!("lakefs-fuse-escape-{}", std::process::id());
    let tmp_marker = std::env::temp_dir().join(&marker);
    let keys = [
        format!("main/../../../../{marker}"),
        format!("main/../../../../../../../../../../tmp/{marker}"),
        format!("main/%2e%2e/%2e%2e/%2e%2e/%2e%2e/{marker}"),
        format!("main/%2E%2E%2F%2E%2E%2F%2E%2E%2F{marker}"),
        format!("main/..%2f..%2f..%2f..%2f{marker}"),
        format!("main/%2ftmp%2f{marker}"),
        format!("main//tmp/{marker}"),
        format!("main/{marker}%00.txt"),
        format!("main/..\\..\\..\\{marker}"),
    ];
    for key in &keys {
        let r = s.s3_put(key, b"payload");
        assert!(r.status == 200 || r.status == 400, "PUT {key}: {} {}", r.status, r.body);
        if r.status == 200 {
            // Accepted keys are opaque names: they read back as the same object, not as a file.
            let got = s.s3_get(key);
            assert_eq!((got.status, got.body.as_str()), (200, "payload"), "GET {key}");
        }
        let r = s.rest(
            "POST",
            &format!(
                "/repositories/repo/branches/main/objects?path={}",
                key.trim_start_matches("main/")
            ),
            "payload",
            Some(basic(KEY, SECRET)),
        );
        assert!(
            r.status == 201 || r.status == 400,
            "REST upload {key}: {} {}",
            r.status,
            r.body
        );
    }
    // Repository, branch and tag names with traversal are refused by the name rules.
    // (Percent signs are literal characters in a JSON name: a tag may be called `%2e%2e`, which is not `..`.)
    for name in ["%2e%2e", "..%2fevil", "a%00b", "%2fabs"] {
        let r = s.s3("PUT", &format!("/{name}"), &[], b"");
        assert!(
            matches!(r.status, 400 | 404 | 405 | 501),
            "CreateBucket {name:?}: {} {}",
            r.status,
            r.body
        );
    }
    for name in ["..", "../evil", "/abs", "a\\u0000b", "evil/..", ".", "../../../../tmp"] {
        let body = format!(r#"{{"name":"{name}","storage_namespace":"local://x"}}"#);
        let r = s.rest("POST", "/repositories", &body, Some(basic(KEY, SECRET)));
        assert_eq!(r.status, 400, "repository {name:?}: {}", r.body);
        let body = format!(r#"{{"name":"{name}","source":"main"}}"#);
        let r = s.rest("POST", "/repositories/repo/branches", &body, Some(basic(KEY, SECRET)));
        assert_eq!(r.status, 400, "branch {name:?}: {}", r.body);
        let body = format!(r#"{{"id":"{name}","ref":"main"}}"#);
        let r = s.rest("POST", "/repositories/repo/tags", &body, Some(basic(KEY, SECRET)));
        assert_eq!(r.status, 400, "tag {name:?}: {}", r.body);
    }
    // Multipart upload ids become directory names; anything but the server's own ids is unknown.
    for id in [
        "..",
        "../../../../tmp",
        "%2e%2e%2f%2e%2e",
        "/tmp",
        &"a".repeat(64).replace('a', "."),
    ] {
        let r = s.s3(
            "PUT",
            &format!("/repo/main/mp?partNumber=1&uploadId={id}"),
            &[],
            b"part",
        );
        assert_eq!(r.status, 404, "uploadId {id:?}: {}", r.body);
        assert!(r.body.contains("NoSuchUpload"), "{}", r.body);
        let r = s.s3("DELETE", &format!("/repo/main/mp?uploadId={id}"), &[], b"");
        assert_eq!(r.status, 404, "abort uploadId {id:?}: {}", r.body);
    }
    // Ref expressions with multi-byte characters after a modifier are refused, not a crash.
    for reference in ["main~1%C3%A9", "main%5E%E2%82%AC", "main~%00", "main@%F0%9F%98%80"] {
        let r = s.rest(
            "GET",
            &format!("/repositories/repo/refs/{reference}/objects/ls"),
            "",
            Some(basic(KEY, SECRET)),
        );
        assert!(
            matches!(r.status, 400 | 404),
            "REST ref {reference}: {} {}",
            r.status,
            r.body
        );
        let r = s.s3("GET", &format!("/repo/{reference}/obj"), &[], b"");
        assert!(
            matches!(r.status, 400 | 404),
            "S3 ref {reference}: {} {}",
            r.status,
            r.body
        );
    }
    assert!(!tmp_marker.exists() && !Path::new("/").join(&marker).exists());
    for file in files_under(s.root.path()) {
        assert!(
            file.starts_with("a/b/data") || file == Path::new("a") || file == Path::new("a/b"),
            "{} is outside the data directory",
            file.display()
        );
        assert!(
            !file.to_string_lossy().contains(&marker),
            "{} carries a key",
            file.display()
        );
    }
    assert!(s.alive());
}

#[test]
fn request_size_limits_are_enforced() {
    let s = Serve::start();
    // JSON: lakeFS's request bodies are small; a 3 MiB one is refused with 413.
    let huge_json = format!(r#"{{"message":"{}"}}"#, "x".repeat(3 << 20));
    let r = s.rest(
        "POST",
        "/repositories/repo/branches/main/commits",
        &huge_json,
        Some(basic(KEY, SECRET)),
    );
    assert_eq!(r.status, 413, "{}", r.body);
    // XML: DeleteObjects and CompleteMultipartUpload documents have ceilings (1000 keys; 10000 parts).
    let mut delete = String::from("<Delete>");
    while delete.len() < (3 << 20) {
        delete.push_str("<Object><Key>main/obj</Key></Object>");
    }
    delete.push_str("</Delete>");
    let r = s.s3("POST", "/repo?delete", &[], delete.as_bytes());
    assert!(matches!(r.status, 400 | 413), "{} {}", r.status, r.body);
    assert_eq!(s.s3_get("main/obj").body, "original", "the oversized delete deleted");
    let created = s.s3("POST", "/repo/main/mp?uploads", &[], b"");
    let upload_id = created
        .body
        .split("<UploadId>")
        .nth(1)
        .unwrap()
        .split("</UploadId>")
        .next()
        .unwrap();
    let mut complete = String::from("<CompleteMultipartUpload>");
    while complete.len() < (5 << 20) {
        complete.push_str("<Part><PartNumber>1</PartNumber><ETag>\"00\"</ETag></Part>");
    }
    complete.push_str("</CompleteMultipartUpload>");
    let r = s.s3(
        "POST",
        &format!("/repo/main/mp?uploadId={upload_id}"),
        &[],
        complete.as_bytes(),
    );
    assert!(matches!(r.status, 400 | 413), "{} {}", r.status, r.body);
    // Headers: one huge header and very many small ones are refused before any handler runs.
    let big_header = vec![("x-filler".to_string(), "h".repeat(1 << 20))];
    let r = s.send(&http_request("GET", "/api/v1/healthcheck", &big_header, b""));
    assert!(matches!(r.status, 0 | 431), "{r:?}");
    let many: Vec<(String, String)> = (0..500).map(|i| (format!("x-h{i}"), "v".to_string())).collect();
    let r = s.send(&http_request("GET", "/api/v1/healthcheck", &many, b""));
    assert!(matches!(r.status, 0 | 431), "{} {}", r.status, r.body);
    let long_target = format!("/api/v1/repositories/{}", "r".repeat(1 << 20));
    let r = s.send(&http_request("GET", &long_target, &[], b""));
    assert!(matches!(r.status, 0 | 400 | 414 | 431), "{} {}", r.status, r.body);
    assert!(s.alive(), "the server went down");
}

#[test]
fn quickstart_keys_refused_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let run = |command: &mut Command| {
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        (line, String::from_utf8_lossy(&output.stderr).to_string())
    };
    let data = dir.path().join("data");
    // Default keys, configured quickstart keys, or only the well-known secret: all refused on 0.0.0.0.
    for keys in [
        None,
        Some((QUICKSTART_ACCESS_KEY_ID, QUICKSTART_SECRET_ACCESS_KEY)),
        Some(("AKIAPRIVATE", QUICKSTART_SECRET_ACCESS_KEY)),
    ] {
        let mut command = serve_command(&data, "0.0.0.0:0");
        if let Some((id, secret)) = keys {
            command
                .env("LAKEFS_FUSE_ACCESS_KEY_ID", id)
                .env("LAKEFS_FUSE_SECRET_ACCESS_KEY", secret);
        }
        let (line, stderr) = run(&mut command);
        assert!(!line.contains("listening"), "{keys:?} served: {line}");
        assert!(
            stderr.contains("quickstart") && stderr.contains("--allow-quickstart-keys-off-loopback"),
            "{stderr}"
        );
        // The refusal names the override but never prints the secret.
        assert!(!stderr.contains(QUICKSTART_SECRET_ACCESS_KEY), "{stderr}");
    }
    let (line, stderr) = run(serve_command(&data, "0.0.0.0:0").arg("--allow-quickstart-keys-off-loopback"));
    assert!(line.starts_with("listening on "), "{line} {stderr}");
    let (line, stderr) = run(serve_command(&data, "0.0.0.0:0")
        .env("LAKEFS_FUSE_ACCESS_KEY_ID", KEY)
        .env("LAKEFS_FUSE_SECRET_ACCESS_KEY", SECRET));
    assert!(line.starts_with("listening on "), "{line} {stderr}");
}
