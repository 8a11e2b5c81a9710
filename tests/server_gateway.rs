//! The S3 gateway of `lakefs-fuse serve` driven by the real aws-sdk-s3 client (path style) and by plain HTTP for
//! presigned URLs and malformed requests.
//!
//! Each test starts its own server on a loopback port over a fresh data directory. Repositories and branches are
//! created through the store before the server opens it (the metadata database admits one opener at a time).

use std::time::Duration;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use lakefs_fuse::server::auth::{Credentials, QUICKSTART_ACCESS_KEY_ID, QUICKSTART_SECRET_ACCESS_KEY};
use lakefs_fuse::server::store::Store;
use lakefs_fuse::server::{start, ServerConfig, ServerHandle};
use md5::{Digest, Md5};

const REPO: &str = "repo1";

struct TestServer {
    handle: Option<ServerHandle>,
    _dir: tempfile::TempDir,
    client: Client,
}

impl TestServer {
    fn base_url(&self) -> String {
        self.handle.as_ref().map(|h| h.base_url()).unwrap_or_default()
    }

    fn client_with(&self, access_key_id: &str, secret: &str) -> Client {
        client(&self.base_url(), access_key_id, secret)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            tokio::spawn(handle.shutdown());
        }
    }
}

fn client(endpoint: &str, access_key_id: &str, secret: &str) -> Client {
    let credentials = aws_credential_types::Credentials::new(access_key_id, secret, None, None, "tests");
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(credentials)
        .build();
    Client::from_conf(config)
}

/// A server with repository [`REPO`] (branches `main` and `dev`) and a tag `v1` on main's first commit.
async fn server() -> TestServer {
    server_with(|_| {}).await
}

/// Like [`server`], with extra store setup before the server opens the store.
async fn server_with(setup: impl FnOnce(&Store)) -> TestServer {
    // `RUST_LOG=lakefs_fuse=debug` shows every S3 request and error.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    {
        let store = Store::open(&data_dir).unwrap();
        store.create_repository(REPO, "local://repo1", "main").unwrap();
        store.create_branch(REPO, "dev", "main", false).unwrap();
        store.create_tag(REPO, "v1", "main").unwrap();
        setup(&store);
    }
    let config = ServerConfig::new(data_dir, "127.0.0.1:0".parse().unwrap(), Credentials::quickstart());
    let handle = start(config).await.unwrap();
    let client = client(
        &handle.base_url(),
        QUICKSTART_ACCESS_KEY_ID,
        QUICKSTART_SECRET_ACCESS_KEY,
    );
    TestServer {
        handle: Some(handle),
        _dir: dir,
        client,
    }
}

fn code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> String {
    err.code().unwrap_or("<none>").to_string()
}

fn status<E, R: HasStatus>(err: &SdkError<E, R>) -> u16 {
    err.raw_response().map(|r| r.status_code()).unwrap_or(0)
}

trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

async fn put(client: &Client, key: &str, body: &[u8]) -> String {
    let out = client
        .put_object()
        .bucket(REPO)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap();
    out.e_tag().unwrap_or_default().to_string()
}

async fn get(client: &Client, key: &str) -> Vec<u8> {
    let out = client.get_object().bucket(REPO).key(key).send().await.unwrap();
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

#[tokio::test]
async fn put_get_head_range_and_metadata() {
    let s = server().await;
    let body = b"hello, lakeFS gateway".to_vec();
    let put = s
        .client
        .put_object()
        .bucket(REPO)
        .key("main/dir/hello.txt")
        .content_type("text/plain")
        .metadata("Owner", "data-team")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(put.e_tag(), Some(format!("\"{}\"", md5_hex(&body)).as_str()));

    let got = s
        .client
        .get_object()
        .bucket(REPO)
        .key("main/dir/hello.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("text/plain"));
    assert_eq!(got.e_tag(), Some(format!("\"{}\"", md5_hex(&body)).as_str()));
    assert_eq!(
        got.metadata().and_then(|m| m.get("owner")).map(String::as_str),
        Some("data-team")
    );
    assert!(got.last_modified().is_some());
    assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), body.as_slice());

    let head = s
        .client
        .head_object()
        .bucket(REPO)
        .key("main/dir/hello.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(body.len() as i64));

    let ranged = s
        .client
        .get_object()
        .bucket(REPO)
        .key("main/dir/hello.txt")
        .range("bytes=7-12")
        .send()
        .await
        .unwrap();
    assert_eq!(
        ranged.content_range(),
        Some(format!("bytes 7-12/{}", body.len()).as_str())
    );
    assert_eq!(
        ranged.body.collect().await.unwrap().into_bytes().as_ref(),
        &body[7..=12]
    );
    let suffix = s
        .client
        .get_object()
        .bucket(REPO)
        .key("main/dir/hello.txt")
        .range("bytes=-4")
        .send()
        .await
        .unwrap();
    assert_eq!(
        suffix.body.collect().await.unwrap().into_bytes().as_ref(),
        &body[body.len() - 4..]
    );

    let err = s
        .client
        .get_object()
        .bucket(REPO)
        .key("main/dir/hello.txt")
        .range("bytes=1000-")
        .send()
        .await
        .unwrap_err();
    assert_eq!((status(&err), code(&err).as_str()), (416, "InvalidRange"));

    // Reads through any ref; the tag predates the write.
    let err = s
        .client
        .get_object()
        .bucket(REPO)
        .key("v1/dir/hello.txt")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NoSuchKey");
    let err = s
        .client
        .get_object()
        .bucket(REPO)
        .key("main/missing")
        .send()
        .await
        .unwrap_err();
    assert_eq!((status(&err), code(&err).as_str()), (404, "NoSuchKey"));
    let err = s
        .client
        .get_object()
        .bucket(REPO)
        .key("nobranch/x")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NoSuchKey");
    let err = s
        .client
        .get_object()
        .bucket("norepo")
        .key("main/x")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NoSuchBucket");
}

#[tokio::test]
async fn writes_need_a_branch_and_honour_preconditions() {
    let s = server().await;
    for key in ["v1/x", "nobranch/x"] {
        let err = s
            .client
            .put_object()
            .bucket(REPO)
            .key(key)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await;
        let err = err.unwrap_err();
        assert_eq!((status(&err), code(&err).as_str()), (404, "NoSuchBucket"), "{key}");
    }
    put(&s.client, "main/once", b"1").await;
    let err = s
        .client
        .put_object()
        .bucket(REPO)
        .key("main/once")
        .if_none_match("*")
        .body(ByteStream::from_static(b"2"))
        .send()
        .await
        .unwrap_err();
    assert_eq!((status(&err), code(&err).as_str()), (412, "PreconditionFailed"));
    assert_eq!(get(&s.client, "main/once").await, b"1");

    let err = s
        .client
        .put_object()
        .bucket(REPO)
        .key("main/digest")
        .content_md5("AAAAAAAAAAAAAAAAAAAAAA==")
        .body(ByteStream::from_static(b"payload"))
        .send()
        .await
        .unwrap_err();
    assert_eq!((status(&err), code(&err).as_str()), (400, "BadDigest"));
    let err = s
        .client
        .head_object()
        .bucket(REPO)
        .key("main/digest")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&err), 404);

    // A wrong flexible checksum is caught too.
    let err = s
        .client
        .put_object()
        .bucket(REPO)
        .key("main/crc")
        .checksum_crc32("AAAAAA==")
        .body(ByteStream::from_static(b"payload"))
        .send()
        .await
        .unwrap_err();
    assert_eq!((status(&err), code(&err).as_str()), (400, "BadDigest"));
    assert!(s
        .client
        .head_object()
        .bucket(REPO)
        .key("main/crc")
        .send()
        .await
        .is_err());

    // Keys are keys, not paths.
    put(&s.client, "main/../../escape", b"dots").await;
    assert_eq!(get(&s.client, "main/../../escape").await, b"dots");
}

#[tokio::test]
async fn list_v1_v2_delimiter_and_paging() {
    let s = server().await;
    for key in ["a/1", "a/2", "b/1", "c", "d/x/y"] {
        put(&s.client, &format!("main/{key}"), key.as_bytes()).await;
    }
    let out = s
        .client
        .list_objects_v2()
        .bucket(REPO)
        .prefix("main/")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = out.contents().iter().filter_map(|o| o.key()).collect();
    let prefixes: Vec<_> = out.common_prefixes().iter().filter_map(|p| p.prefix()).collect();
    assert_eq!(keys, ["main/c"]);
    assert_eq!(prefixes, ["main/a/", "main/b/", "main/d/"]);
    assert_eq!(out.key_count(), Some(4));
    assert_eq!(out.is_truncated(), Some(false));
    let c = &out.contents()[0];
    assert_eq!(c.e_tag(), Some(format!("\"{}\"", md5_hex(b"c")).as_str()));
    assert_eq!(c.size(), Some(1));

    // Paging without a delimiter, two keys at a time.
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let out = s
            .client
            .list_objects_v2()
            .bucket(REPO)
            .prefix("main/")
            .max_keys(2)
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        pages += 1;
        all.extend(out.contents().iter().filter_map(|o| o.key().map(str::to_string)));
        if out.is_truncated() != Some(true) {
            break;
        }
        token = out.next_continuation_token().map(str::to_string);
        assert!(token.is_some());
    }
    assert_eq!(all, ["main/a/1", "main/a/2", "main/b/1", "main/c", "main/d/x/y"]);
    assert_eq!(pages, 3);

    let out = s
        .client
        .list_objects_v2()
        .bucket(REPO)
        .prefix("main/a")
        .start_after("main/a/1")
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = out.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["main/a/2"]);

    // A prefix without '/' lists branches.
    let out = s
        .client
        .list_objects_v2()
        .bucket(REPO)
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let prefixes: Vec<_> = out.common_prefixes().iter().filter_map(|p| p.prefix()).collect();
    assert_eq!(prefixes, ["dev/", "main/"]);
    assert!(out.contents().is_empty());

    // v1 with marker and NextMarker.
    let out = s
        .client
        .list_objects()
        .bucket(REPO)
        .prefix("main/")
        .delimiter("/")
        .max_keys(2)
        .send()
        .await
        .unwrap();
    assert_eq!(out.is_truncated(), Some(true));
    assert_eq!(out.next_marker(), Some("main/b/"));
    let out = s
        .client
        .list_objects()
        .bucket(REPO)
        .prefix("main/")
        .delimiter("/")
        .marker("main/b/")
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = out.contents().iter().filter_map(|o| o.key()).collect();
    let prefixes: Vec<_> = out.common_prefixes().iter().filter_map(|p| p.prefix()).collect();
    assert_eq!((keys, prefixes), (vec!["main/c"], vec!["main/d/"]));

    // Unknown ref: empty in v1, 400 in v2.
    let out = s
        .client
        .list_objects()
        .bucket(REPO)
        .prefix("nobranch/")
        .send()
        .await
        .unwrap();
    assert!(out.contents().is_empty());
    let err = s
        .client
        .list_objects_v2()
        .bucket(REPO)
        .prefix("nobranch/")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&err), 400);

    let buckets = s.client.list_buckets().send().await.unwrap();
    let names: Vec<_> = buckets.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, [REPO]);
    s.client.head_bucket().bucket(REPO).send().await.unwrap();
    assert!(s.client.head_bucket().bucket("norepo").send().await.is_err());
}

#[tokio::test]
async fn copy_delete_and_delete_objects() {
    let s = server().await;
    let body = b"copy me".to_vec();
    s.client
        .put_object()
        .bucket(REPO)
        .key("main/src")
        .metadata("k", "v")
        .content_type("text/x-src")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();

    let copied = s
        .client
        .copy_object()
        .bucket(REPO)
        .key("dev/copied")
        .copy_source(format!("{REPO}/main/src"))
        .send()
        .await;
    let copied = copied.unwrap();
    assert_eq!(
        copied.copy_object_result().and_then(|r| r.e_tag()),
        Some(format!("\"{}\"", md5_hex(&body)).as_str())
    );
    let got = s
        .client
        .get_object()
        .bucket(REPO)
        .key("dev/copied")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("text/x-src"));
    assert_eq!(got.metadata().and_then(|m| m.get("k")).map(String::as_str), Some("v"));
    assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), body.as_slice());

    s.client
        .copy_object()
        .bucket(REPO)
        .key("main/replaced with space")
        .copy_source(format!("{REPO}/main/src"))
        .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
        .metadata("other", "x")
        .send()
        .await
        .unwrap();
    let head = s
        .client
        .head_object()
        .bucket(REPO)
        .key("main/replaced with space")
        .send()
        .await
        .unwrap();
    let metadata = head.metadata().cloned().unwrap_or_default();
    assert_eq!(metadata.get("other").map(String::as_str), Some("x"));
    assert!(!metadata.contains_key("k"));

    let err = s
        .client
        .copy_object()
        .bucket(REPO)
        .key("main/x")
        .copy_source(format!("{REPO}/main/missing"))
        .send()
        .await;
    assert_eq!(code(&err.unwrap_err()), "NoSuchKey");

    s.client
        .delete_object()
        .bucket(REPO)
        .key("dev/copied")
        .send()
        .await
        .unwrap();
    assert!(s
        .client
        .head_object()
        .bucket(REPO)
        .key("dev/copied")
        .send()
        .await
        .is_err());
    // Deleting a missing key succeeds.
    s.client
        .delete_object()
        .bucket(REPO)
        .key("dev/never")
        .send()
        .await
        .unwrap();

    put(&s.client, "main/x1", b"1").await;
    put(&s.client, "dev/x2", b"2").await;
    let delete = Delete::builder()
        .objects(ObjectIdentifier::builder().key("main/x1").build().unwrap())
        .objects(ObjectIdentifier::builder().key("dev/x2").build().unwrap())
        .objects(ObjectIdentifier::builder().key("main/not-there").build().unwrap())
        .build()
        .unwrap();
    let out = s
        .client
        .delete_objects()
        .bucket(REPO)
        .delete(delete)
        .send()
        .await
        .unwrap();
    let mut deleted: Vec<_> = out.deleted().iter().filter_map(|d| d.key()).collect();
    deleted.sort();
    assert_eq!(deleted, ["dev/x2", "main/not-there", "main/x1"]);
    assert!(out.errors().is_empty());
    assert!(s.client.head_object().bucket(REPO).key("main/x1").send().await.is_err());
    assert!(s.client.head_object().bucket(REPO).key("dev/x2").send().await.is_err());
}

#[tokio::test]
async fn multipart_upload_complete_list_abort() {
    let s = server().await;
    let key = "main/big/object.bin";
    let parts: Vec<Vec<u8>> = vec![vec![1u8; 5 << 20], vec![2u8; 5 << 20], b"tail".to_vec()];
    let created = s
        .client
        .create_multipart_upload()
        .bucket(REPO)
        .key(key)
        .content_type("application/x-big")
        .send();
    let upload_id = created.await.unwrap().upload_id().unwrap().to_string();

    let mut completed = Vec::new();
    for (i, data) in parts.iter().enumerate() {
        let number = i as i32 + 1;
        let out = s
            .client
            .upload_part()
            .bucket(REPO)
            .key(key)
            .upload_id(&upload_id)
            .part_number(number)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(out.e_tag(), Some(format!("\"{}\"", md5_hex(data)).as_str()));
        completed.push(
            CompletedPart::builder()
                .part_number(number)
                .e_tag(out.e_tag().unwrap())
                .build(),
        );
    }
    let listed = s
        .client
        .list_parts()
        .bucket(REPO)
        .key(key)
        .upload_id(&upload_id)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.parts().len(), 3);
    assert_eq!(listed.parts()[0].size(), Some(5 << 20));

    let done = s
        .client
        .complete_multipart_upload()
        .bucket(REPO)
        .key(key)
        .upload_id(&upload_id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(completed)).build())
        .send()
        .await
        .unwrap();
    let mut concatenated_md5s = Vec::new();
    for data in &parts {
        concatenated_md5s.extend_from_slice(&Md5::digest(data));
    }
    let multipart_md5 = md5_hex(&concatenated_md5s);
    assert_eq!(done.e_tag(), Some(format!("\"{multipart_md5}-3\"").as_str()));

    let head = s.client.head_object().bucket(REPO).key(key).send().await.unwrap();
    assert_eq!(head.e_tag(), Some(format!("\"{multipart_md5}\"").as_str()));
    assert_eq!(head.content_type(), Some("application/x-big"));
    let data = get(&s.client, key).await;
    assert_eq!(data, parts.concat());

    // The upload is gone after completion.
    let err = s
        .client
        .list_parts()
        .bucket(REPO)
        .key(key)
        .upload_id(&upload_id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&err), 404);

    // Abort.
    let aborted = s
        .client
        .create_multipart_upload()
        .bucket(REPO)
        .key("main/aborted")
        .send()
        .await
        .unwrap();
    let aborted_id = aborted.upload_id().unwrap().to_string();
    let uploads = s.client.list_multipart_uploads().bucket(REPO).send().await.unwrap();
    assert_eq!(
        uploads
            .uploads()
            .iter()
            .filter_map(|u| u.upload_id())
            .collect::<Vec<_>>(),
        [aborted_id.as_str()]
    );
    s.client
        .abort_multipart_upload()
        .bucket(REPO)
        .key("main/aborted")
        .upload_id(&aborted_id)
        .send()
        .await
        .unwrap();
    let err = s
        .client
        .upload_part()
        .bucket(REPO)
        .key("main/aborted")
        .upload_id(&aborted_id)
        .part_number(1)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NoSuchUpload");
    // Creating an upload on a non-branch ref fails like a put.
    let err = s
        .client
        .create_multipart_upload()
        .bucket(REPO)
        .key("v1/x")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NoSuchBucket");
}

#[tokio::test]
async fn upload_part_copy_and_wrong_part_order() {
    let s = server().await;
    let source: Vec<u8> = (0..(6u32 << 20)).map(|i| (i % 251) as u8).collect();
    put(&s.client, "main/source", &source).await;
    let upload = s
        .client
        .create_multipart_upload()
        .bucket(REPO)
        .key("main/assembled")
        .send()
        .await
        .unwrap();
    let upload_id = upload.upload_id().unwrap().to_string();
    let first = s
        .client
        .upload_part_copy()
        .bucket(REPO)
        .key("main/assembled")
        .upload_id(&upload_id)
        .part_number(1)
        .copy_source(format!("{REPO}/main/source"))
        .copy_source_range("bytes=0-5242879")
        .send()
        .await
        .unwrap();
    let first_etag = first.copy_part_result().and_then(|r| r.e_tag()).unwrap().to_string();
    let second = s
        .client
        .upload_part()
        .bucket(REPO)
        .key("main/assembled")
        .upload_id(&upload_id)
        .part_number(2)
        .body(ByteStream::from_static(b"end"))
        .send()
        .await
        .unwrap();
    let second_etag = second.e_tag().unwrap().to_string();

    let wrong_order = CompletedMultipartUpload::builder()
        .parts(CompletedPart::builder().part_number(2).e_tag(&second_etag).build())
        .parts(CompletedPart::builder().part_number(1).e_tag(&first_etag).build())
        .build();
    let err = s
        .client
        .complete_multipart_upload()
        .bucket(REPO)
        .key("main/assembled")
        .upload_id(&upload_id)
        .multipart_upload(wrong_order)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidPartOrder");

    let parts = CompletedMultipartUpload::builder()
        .parts(CompletedPart::builder().part_number(1).e_tag(&first_etag).build())
        .parts(CompletedPart::builder().part_number(2).e_tag(&second_etag).build())
        .build();
    s.client
        .complete_multipart_upload()
        .bucket(REPO)
        .key("main/assembled")
        .upload_id(&upload_id)
        .multipart_upload(parts)
        .send()
        .await
        .unwrap();
    let mut expected = source[..5 << 20].to_vec();
    expected.extend_from_slice(b"end");
    assert_eq!(get(&s.client, "main/assembled").await, expected);
}

#[tokio::test]
async fn presigned_get_and_put() {
    let s = server().await;
    let http = reqwest::Client::new();
    let config = PresigningConfig::expires_in(Duration::from_secs(300)).unwrap();
    let presigned_put = s
        .client
        .put_object()
        .bucket(REPO)
        .key("main/presigned")
        .presigned(config.clone())
        .await
        .unwrap();
    let mut request = http.put(presigned_put.uri()).body("via presigned put");
    for (name, value) in presigned_put.headers() {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap_or_default());

    let presigned_get = s
        .client
        .get_object()
        .bucket(REPO)
        .key("main/presigned")
        .presigned(config)
        .await
        .unwrap();
    let response = http.get(presigned_get.uri()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-amz-request-id"));
    assert_eq!(response.text().await.unwrap(), "via presigned put");

    // Tampering with the signed URL breaks it.
    let tampered = presigned_get.uri().replace("main/presigned", "main/presigneX");
    let response = http.get(tampered).send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("<Code>SignatureDoesNotMatch</Code>"));

    // An expired URL.
    let expired = PresigningConfig::builder()
        .start_time(std::time::SystemTime::now() - Duration::from_secs(3600))
        .expires_in(Duration::from_secs(60))
        .build()
        .unwrap();
    let old = s
        .client
        .get_object()
        .bucket(REPO)
        .key("main/presigned")
        .presigned(expired)
        .await
        .unwrap();
    let response = http.get(old.uri()).send().await.unwrap();
    assert_eq!(response.status(), 403);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("<Code>AccessDenied</Code>") && text.contains("Request has expired"),
        "{text}"
    );
}

#[tokio::test]
async fn authentication_failures() {
    let s = server().await;
    put(&s.client, "main/secret", b"s").await;

    let wrong_secret = s.client_with(QUICKSTART_ACCESS_KEY_ID, "not-the-secret");
    let err = wrong_secret
        .get_object()
        .bucket(REPO)
        .key("main/secret")
        .send()
        .await
        .unwrap_err();
    assert_eq!((status(&err), code(&err).as_str()), (403, "SignatureDoesNotMatch"));

    let unknown = s.client_with("AKIAUNKNOWNKEY", QUICKSTART_SECRET_ACCESS_KEY);
    let err = unknown.list_buckets().send().await.unwrap_err();
    assert_eq!((status(&err), code(&err).as_str()), (403, "AccessDenied"));
    let err = unknown
        .put_object()
        .bucket(REPO)
        .key("main/w")
        .body(ByteStream::from_static(b"w"))
        .send()
        .await;
    assert_eq!(code(&err.unwrap_err()), "AccessDenied");

    // A signed request aimed at the REST API is S3 to the router, with a hint in the error.
    let err = s
        .client
        .get_object()
        .bucket("api")
        .key("v1/repositories")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (status(&err), code(&err).as_str()),
        (404, "ErrNoSuchBucketPossibleAPIEndpoint")
    );

    // Unsigned requests never read data: on localhost they are not S3 at all, with a gateway Host they are
    // rejected as unsigned.
    let http = reqwest::Client::new();
    let response = http
        .get(format!("{}/{REPO}/main/secret", s.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_ne!(response.text().await.unwrap(), "s");
    let response = http
        .get(format!("{}/{REPO}/main/secret", s.base_url()))
        .header("host", "s3.local.lakefs.io")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.headers().contains_key("x-amz-request-id"));
    assert!(response.text().await.unwrap().contains("<Code>MissingFields</Code>"));
}

#[tokio::test]
async fn virtual_host_addressing_and_unsupported_operations() {
    let s = server().await;
    put(&s.client, "main/vh", b"virtual").await;
    // Virtual-host style with a signed request: the SDK signs the Host it is given.
    let credentials = aws_credential_types::Credentials::new(
        QUICKSTART_ACCESS_KEY_ID,
        QUICKSTART_SECRET_ACCESS_KEY,
        None,
        None,
        "tests",
    );
    let port = s.handle.as_ref().unwrap().addr().port();
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(format!("http://s3.local.lakefs.io:{port}"))
        .credentials_provider(credentials)
        .build();
    let presigned = Client::from_conf(config)
        .get_object()
        .bucket(REPO)
        .key("main/vh")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(60)).unwrap())
        .await
        .unwrap();
    let uri = presigned.uri().to_string();
    assert!(
        uri.starts_with(&format!("http://{REPO}.s3.local.lakefs.io:{port}/main/vh")),
        "{uri}"
    );
    // Connect to loopback while sending the virtual host name.
    let local = uri.replacen(&format!("{REPO}.s3.local.lakefs.io"), "127.0.0.1", 1);
    let response = reqwest::Client::new()
        .get(local)
        .header("host", format!("{REPO}.s3.local.lakefs.io:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "virtual");

    let err = s.client.delete_bucket().bucket(REPO).send().await.unwrap_err();
    assert_eq!((status(&err), code(&err).as_str()), (405, "ERRLakeFSNotSupported"));
    let err = s
        .client
        .get_object_acl()
        .bucket(REPO)
        .key("main/vh")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&err), 405);
    let err = s.client.create_bucket().bucket(REPO).send().await.unwrap_err();
    assert_eq!(code(&err), "BucketAlreadyExists");
    let location = s.client.get_bucket_location().bucket(REPO).send().await.unwrap();
    assert!(location.location_constraint().is_none_or(|c| c.as_str().is_empty()));
}

#[tokio::test]
async fn streaming_upload_with_checksum_trailer() {
    let s = server().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upload.bin");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    // A body from a file is streamed; with a checksum the SDK sends aws-chunked with a trailer.
    let body = ByteStream::from_path(&path).await.unwrap();
    s.client
        .put_object()
        .bucket(REPO)
        .key("main/streamed")
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(get(&s.client, "main/streamed").await, data);
    let body = ByteStream::from_path(&path).await.unwrap();
    s.client
        .put_object()
        .bucket(REPO)
        .key("main/streamed-crc")
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32)
        .body(body)
        .send()
        .await
        .unwrap();
    let head = s
        .client
        .head_object()
        .bucket(REPO)
        .key("main/streamed-crc")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(data.len() as i64));
    assert_eq!(head.e_tag(), Some(format!("\"{}\"", md5_hex(&data)).as_str()));
}

#[tokio::test]
async fn malformed_requests_do_not_crash() {
    let s = server().await;
    let http = reqwest::Client::new();
    // Malformed DeleteObjects XML, signed normally: the body is swapped before signing.
    let err = s
        .client
        .delete_objects()
        .bucket(REPO)
        .delete(
            Delete::builder()
                .objects(ObjectIdentifier::builder().key("main/a").build().unwrap())
                .build()
                .unwrap(),
        )
        .customize()
        .mutate_request(|request| {
            let malformed = "<Delete><Object><Key>main/a</Object>";
            *request.body_mut() = aws_smithy_types::body::SdkBody::from(malformed);
            request
                .headers_mut()
                .insert("content-length", malformed.len().to_string());
            // The checksums were computed over the original body.
            for name in [
                "content-md5",
                "x-amz-checksum-crc32",
                "x-amz-checksum-crc32c",
                "x-amz-checksum-crc64nvme",
            ] {
                request.headers_mut().remove(name);
            }
        })
        .send()
        .await
        .unwrap_err();
    assert_eq!((status(&err), code(&err).as_str()), (400, "MalformedXML"));

    // A huge header is refused by the HTTP layer or the gateway, and the server keeps serving.
    let response = http
        .get(format!("{}/{REPO}/main/x", s.base_url()))
        .header(
            "authorization",
            format!("AWS4-HMAC-SHA256 Credential={}", "x".repeat(64 * 1024)),
        )
        .send()
        .await;
    if let Ok(response) = response {
        assert!(response.status().is_client_error());
    }
    s.client.head_bucket().bucket(REPO).send().await.unwrap();
}

/// A hand-made SigV4 signature, for requests the SDK does not produce (signed aws-chunked bodies, wrong payload
/// hashes, truncated bodies).
struct Signed {
    headers: Vec<(String, String)>,
    signing_key: Vec<u8>,
    amz_date: String,
    scope: String,
    signature: String,
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data))
}

/// Signs `method path` (an already canonical, unencoded-safe path) with the quickstart keys.
fn sign_v4(method: &str, host: &str, path: &str, extra: &[(&str, String)], payload_hash: &str) -> Signed {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let amz_date = time::OffsetDateTime::now_utc().format(format).unwrap();
    let scope = format!("{}/us-east-1/s3/aws4_request", &amz_date[..8]);
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), host.into()),
        ("x-amz-content-sha256".into(), payload_hash.into()),
        ("x-amz-date".into(), amz_date.clone()),
    ];
    headers.extend(extra.iter().map(|(n, v)| (n.to_string(), v.clone())));
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let signed_headers = headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(";");
    let canonical_request = format!("{method}\n{path}\n\n{canonical_headers}\n{signed_headers}\n{payload_hash}");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let mut signing_key = format!("AWS4{QUICKSTART_SECRET_ACCESS_KEY}").into_bytes();
    for part in scope.split('/') {
        signing_key = hmac_sha256(&signing_key, part.as_bytes());
    }
    let signature = hex::encode(hmac_sha256(&signing_key, string_to_sign.as_bytes()));
    headers.push((
        "authorization".into(),
        format!(
            "AWS4-HMAC-SHA256 Credential={QUICKSTART_ACCESS_KEY_ID}/{scope}, SignedHeaders={signed_headers}, \
             Signature={signature}"
        ),
    ));
    Signed {
        headers,
        signing_key,
        amz_date,
        scope,
        signature,
    }
}

/// An aws-chunked body with chained chunk signatures; `tamper` flips a byte of chunk 1's data after signing.
fn signed_chunked_body(signed: &Signed, data: &[u8], chunk_size: usize, tamper: bool) -> Vec<u8> {
    let mut body = Vec::new();
    let mut previous = signed.signature.clone();
    let mut chunks: Vec<&[u8]> = data.chunks(chunk_size).collect();
    chunks.push(&[]);
    for (i, chunk) in chunks.into_iter().enumerate() {
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{previous}\n{}\n{}",
            signed.amz_date,
            signed.scope,
            sha256_hex(b""),
            sha256_hex(chunk)
        );
        let signature = hex::encode(hmac_sha256(&signed.signing_key, string_to_sign.as_bytes()));
        body.extend_from_slice(format!("{:x};chunk-signature={signature}\r\n", chunk.len()).as_bytes());
        let start = body.len();
        body.extend_from_slice(chunk);
        if tamper && i == 1 {
            body[start] ^= 1;
        }
        body.extend_from_slice(b"\r\n");
        previous = signature;
    }
    body
}

async fn send_signed(
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    signed: &Signed,
    body: Vec<u8>,
) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", s.base_url()))
        .body(body);
    for (name, value) in &signed.headers {
        if name != "host" {
            request = request.header(name, value);
        }
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn exists(s: &TestServer, key: &str) -> bool {
    s.client.head_object().bucket(REPO).key(key).send().await.is_ok()
}

#[tokio::test]
async fn signed_aws_chunked_upload() {
    let s = server().await;
    let host = s.base_url().trim_start_matches("http://").to_string();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
    for (key, tamper) in [("chunked-ok", false), ("chunked-bad", true)] {
        let path = format!("/{REPO}/main/{key}");
        let probe = sign_v4("PUT", &host, &path, &[], "STREAMING-AWS4-HMAC-SHA256-PAYLOAD");
        let encoded_len = signed_chunked_body(&probe, &data, 65536, false).len();
        let extra = [
            ("content-encoding", "aws-chunked".to_string()),
            ("content-length", encoded_len.to_string()),
            ("x-amz-decoded-content-length", data.len().to_string()),
        ];
        let signed = sign_v4("PUT", &host, &path, &extra, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD");
        let body = signed_chunked_body(&signed, &data, 65536, tamper);
        let (status, text) = send_signed(&s, reqwest::Method::PUT, &path, &signed, body).await;
        if tamper {
            assert_eq!(status, 403, "{text}");
            assert!(text.contains("SignatureDoesNotMatch"), "{text}");
            assert!(!exists(&s, &format!("main/{key}")).await);
        } else {
            assert_eq!(status, 200, "{text}");
            assert_eq!(get(&s.client, &format!("main/{key}")).await, data);
        }
    }
}

#[tokio::test]
async fn payload_hash_mismatch_and_truncated_body_store_nothing() {
    let s = server().await;
    let host = s.base_url().trim_start_matches("http://").to_string();

    let path = format!("/{REPO}/main/mismatch");
    let signed = sign_v4("PUT", &host, &path, &[], &sha256_hex(b"what was signed"));
    let (status, text) = send_signed(&s, reqwest::Method::PUT, &path, &signed, b"what was sent".to_vec()).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("<Code>XAmzContentSHA256Mismatch</Code>"), "{text}");
    assert!(!exists(&s, "main/mismatch").await);

    // Announce 1000 bytes, send 10, close the sending side.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let path = format!("/{REPO}/main/truncated");
    let signed = sign_v4(
        "PUT",
        &host,
        &path,
        &[("content-length", "1000".to_string())],
        "UNSIGNED-PAYLOAD",
    );
    let mut stream = tokio::net::TcpStream::connect(&host).await.unwrap();
    let mut request = format!("PUT {path} HTTP/1.1\r\n");
    for (name, value) in &signed.headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n0123456789");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response);
    assert!(!response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(!exists(&s, "main/truncated").await);

    // Unicode, spaces and reserved characters in keys survive signing and routing.
    let key = "main/ü dir/a+b=c&d;e.txt";
    put(&s.client, key, b"odd key").await;
    assert_eq!(get(&s.client, key).await, b"odd key");
    let listed = s
        .client
        .list_objects_v2()
        .bucket(REPO)
        .prefix("main/ü")
        .send()
        .await
        .unwrap();
    assert_eq!(
        listed.contents().iter().filter_map(|o| o.key()).collect::<Vec<_>>(),
        [key]
    );
}

#[tokio::test]
async fn protected_branches_and_read_only_repositories_refuse_writes() {
    let s = server_with(|store| {
        store.create_branch(REPO, "prod", "main", false).unwrap();
        store
            .set_setting(REPO, "branch_protection", Some(r#"[{"pattern":"pro*"}]"#))
            .unwrap();
        store.create_repository("frozen", "local://frozen", "main").unwrap();
        store.set_repository_read_only("frozen", true).unwrap();
    })
    .await;
    let err = s
        .client
        .put_object()
        .bucket(REPO)
        .key("prod/x")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    let err = err.unwrap_err();
    assert_eq!((status(&err), code(&err).as_str()), (403, "ErrWriteToProtectedBranch"));
    let err = s
        .client
        .delete_object()
        .bucket(REPO)
        .key("prod/x")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ErrWriteToProtectedBranch");
    let err = s
        .client
        .create_multipart_upload()
        .bucket(REPO)
        .key("prod/x")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ErrWriteToProtectedBranch");
    // Other branches stay writable, and reads of the protected one work.
    put(&s.client, "main/x", b"x").await;
    s.client
        .list_objects_v2()
        .bucket(REPO)
        .prefix("prod/")
        .send()
        .await
        .unwrap();

    let err = s
        .client
        .put_object()
        .bucket("frozen")
        .key("main/x")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    let err = err.unwrap_err();
    assert_eq!((status(&err), code(&err).as_str()), (403, "ErrReadOnlyRepository"));
}

/// Parts arriving out of order, a part uploaded twice and a completion with a subset of the parts: the object
/// is exactly the parts named, stored under the SHA-256 of those bytes (the running hash must not have covered
/// anything else).
#[tokio::test]
async fn multipart_blob_address_is_the_sha256_of_the_parts_named() {
    use sha2::Sha256;
    let s = server().await;
    let part = |byte: u8, len: usize| vec![byte; len];
    let upload = |key: &'static str| {
        let client = s.client.clone();
        async move {
            let created = client.create_multipart_upload().bucket(REPO).key(key).send();
            created.await.unwrap().upload_id().unwrap().to_string()
        }
    };
    let put_part = |key: &'static str, id: String, number: i32, data: Vec<u8>| {
        let client = s.client.clone();
        async move {
            let out = client
                .upload_part()
                .bucket(REPO)
                .key(key)
                .upload_id(id)
                .part_number(number)
                .body(ByteStream::from(data))
                .send()
                .await
                .unwrap();
            CompletedPart::builder()
                .part_number(number)
                .e_tag(out.e_tag().unwrap())
                .build()
        }
    };
    let complete = |key: &'static str, id: String, parts: Vec<CompletedPart>| {
        let client = s.client.clone();
        async move {
            client
                .complete_multipart_upload()
                .bucket(REPO)
                .key(key)
                .upload_id(id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .unwrap();
        }
    };
    let blob_of = |data: &[u8]| {
        let sha = hex::encode(Sha256::digest(data));
        s._dir.path().join("data/blobs").join(&sha[..2]).join(sha)
    };

    let key = "main/reordered.bin";
    let id = upload(key).await;
    let p2 = put_part(key, id.clone(), 2, part(2, 5 << 20)).await;
    let p3 = put_part(key, id.clone(), 3, part(3, 1000)).await;
    let _p1 = put_part(key, id.clone(), 1, part(1, 5 << 20)).await;
    // Let the running hash cover parts 1..3, then replace part 1.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let p1 = put_part(key, id.clone(), 1, part(9, 5 << 20)).await;
    complete(key, id, vec![p1, p2, p3]).await;
    let expected = [part(9, 5 << 20), part(2, 5 << 20), part(3, 1000)].concat();
    assert_eq!(get(&s.client, key).await, expected);
    assert_eq!(std::fs::read(blob_of(&expected)).unwrap(), expected);

    let key = "main/subset.bin";
    let id = upload(key).await;
    let q1 = put_part(key, id.clone(), 1, part(4, 5 << 20)).await;
    let _q2 = put_part(key, id.clone(), 2, part(5, 5 << 20)).await;
    let q3 = put_part(key, id.clone(), 3, part(6, 10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    complete(key, id, vec![q1, q3]).await;
    let expected = [part(4, 5 << 20), part(6, 10)].concat();
    assert_eq!(get(&s.client, key).await, expected);
    assert_eq!(std::fs::read(blob_of(&expected)).unwrap(), expected);
}
