//! Data path through the lakeFS S3 gateway, with aws-sdk-s3.
//!
//! Addressing is path-style (bucket = repository, key = `<ref>/<path>`), region `us-east-1`, static credentials
//! (the same access key as the REST API). The gateway listens on the same port as the REST API, at the server's
//! root: an endpoint given as `http://host:8000/api/v1` is reduced to `http://host:8000`. Reads are single ranged
//! GETs; the ETag comes back with the bytes so the caller can detect an object replaced since it was listed.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use aws_credential_types::Credentials;
use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;

use super::buffers::BufferPool;
use super::{ClientConfig, LakeFsError, MultipartUpload, ObjectBytes, Result};

#[derive(Debug, Clone)]
pub struct GatewayClient {
    s3: Client,
    /// Receive buffers for ranged GETs, recycled (see [`buffers`](super::buffers)).
    buffers: Arc<BufferPool>,
}

/// Idle receive buffers kept for reuse: a few of a stream's 4 MiB runs, enough for the streams of a busy mount to
/// recycle theirs. Outside `max_memory`, inside the 64 MiB the mount may use beyond it.
const IDLE_BUFFER_BYTES: usize = 16 << 20;

/// The server root the gateway answers on: scheme, host and port of `endpoint`.
pub fn gateway_url(endpoint: &str) -> Result<String> {
    let url = url::Url::parse(endpoint.trim())
        .map_err(|e| LakeFsError::Protocol(format!("invalid endpoint URL {endpoint:?}: {e}")))?;
    let host = url
        .host_str()
        .ok_or_else(|| LakeFsError::Protocol(format!("endpoint {endpoint:?} has no host")))?;
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    Ok(match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    })
}

impl GatewayClient {
    pub fn new(config: &ClientConfig) -> Result<Self> {
        let credentials = Credentials::new(
            &config.access_key_id,
            &config.secret_access_key,
            None,
            None,
            "lakefs-fuse",
        );
        let s3_config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(gateway_url(&config.endpoint)?)
            .credentials_provider(credentials)
            .force_path_style(true)
            // Retries and deadlines belong to `retry.rs`, one policy for both clients.
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            .build();
        Ok(Self {
            s3: Client::from_conf(s3_config),
            buffers: BufferPool::new(IDLE_BUFFER_BYTES),
        })
    }

    pub async fn get_range(&self, repo: &str, reference: &str, path: &str, range: Range<u64>) -> Result<ObjectBytes> {
        if range.is_empty() {
            return Ok(ObjectBytes {
                data: bytes::Bytes::new(),
                etag: None,
            });
        }
        let response = self
            .s3
            .get_object()
            .bucket(repo)
            .key(format!("{reference}/{path}"))
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await
            .map_err(classify)?;
        let etag = response.e_tag().map(|e| e.trim_matches('"').to_string());
        let served = response.content_range().and_then(served_length);
        // The body goes straight into one buffer of the range's size: one copy, into memory already mapped.
        let expected = range.end - range.start;
        let mut buffer = self.buffers.take(expected as usize);
        let mut body = response.body;
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| LakeFsError::Transport(format!("reading object body: {e}")))?
        {
            // A server ignoring the range would send the whole object: stop before holding it.
            if (buffer.len() + chunk.len()) as u64 > expected {
                return Err(LakeFsError::Transport(format!(
                    "{reference}/{path}: the body of range {range:?} is longer than the range"
                )));
            }
            buffer.extend_from_slice(&chunk);
        }
        let data = buffer.freeze();
        // A body shorter than the range the server says it sent was cut short by a proxy or a failing server: a
        // transport fault, retried like one. A complete body shorter than asked means the object is smaller now
        // (replaced since it was stat'ed); the caller sees that from the ETag.
        let complete = served.is_some_and(|served| served == data.len() as u64);
        if data.len() as u64 != expected && !complete {
            return Err(LakeFsError::Transport(format!(
                "short body for {reference}/{path}: {} of {expected} bytes",
                data.len()
            )));
        }
        Ok(ObjectBytes { data, etag })
    }

    /// Upload local `file` to `path` on `branch`: one PUT up to [`MULTIPART_THRESHOLD`], above it a multipart
    /// upload with [`PART_SIZE`] parts, [`PARTS_IN_FLIGHT`] at a time. A failed multipart upload is aborted.
    /// Returns the size sent and the object's ETag (unquoted).
    pub async fn put_file(&self, repo: &str, branch: &str, path: &str, file: &Path) -> Result<(u64, String)> {
        let key = format!("{branch}/{path}");
        let size = tokio::fs::metadata(file)
            .await
            .map_err(|e| LakeFsError::Transport(format!("reading {}: {e}", file.display())))?
            .len();
        if size <= MULTIPART_THRESHOLD {
            let body = ByteStream::from_path(file)
                .await
                .map_err(|e| LakeFsError::Transport(format!("reading {}: {e}", file.display())))?;
            let put = self
                .s3
                .put_object()
                .bucket(repo)
                .key(&key)
                .body(body)
                .send()
                .await
                .map_err(classify)?;
            return Ok((size, put.e_tag().unwrap_or_default().trim_matches('"').to_string()));
        }
        let upload = self
            .s3
            .create_multipart_upload()
            .bucket(repo)
            .key(&key)
            .send()
            .await
            .map_err(classify)?;
        let upload_id = upload
            .upload_id()
            .ok_or_else(|| LakeFsError::Protocol("multipart upload without an upload id".into()))?
            .to_string();
        match self.put_parts(repo, &key, &upload_id, file, size).await {
            Ok(parts) => {
                let completed = CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
                let done = self
                    .s3
                    .complete_multipart_upload()
                    .bucket(repo)
                    .key(&key)
                    .upload_id(&upload_id)
                    .multipart_upload(completed)
                    .send()
                    .await
                    .map_err(classify)?;
                Ok((size, done.e_tag().unwrap_or_default().trim_matches('"').to_string()))
            }
            Err(err) => {
                let abort = self
                    .s3
                    .abort_multipart_upload()
                    .bucket(repo)
                    .key(&key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                if let Err(abort) = abort {
                    tracing::warn!(key, error = %classify(abort), "aborting a failed multipart upload");
                }
                Err(err)
            }
        }
    }

    /// Start a multipart upload of `path` on `branch`; the upload id.
    pub async fn create_multipart(&self, repo: &str, branch: &str, path: &str) -> Result<String> {
        let upload = self
            .s3
            .create_multipart_upload()
            .bucket(repo)
            .key(format!("{branch}/{path}"))
            .send()
            .await
            .map_err(classify)?;
        upload
            .upload_id()
            .map(str::to_string)
            .ok_or_else(|| LakeFsError::Protocol("multipart upload without an upload id".into()))
    }

    /// Upload bytes `range` of `file` as part `number`; the part's ETag.
    pub async fn upload_part(
        &self,
        upload: &MultipartUpload,
        number: u32,
        file: &Path,
        range: Range<u64>,
    ) -> Result<String> {
        let number = i32::try_from(number).map_err(|_| LakeFsError::BadRequest(format!("part number {number}")))?;
        let body = ByteStream::read_from()
            .path(file)
            .offset(range.start)
            .length(aws_smithy_types::byte_stream::Length::Exact(range.end - range.start))
            .build()
            .await
            .map_err(|e| LakeFsError::Transport(format!("reading {}: {e}", file.display())))?;
        let part = self
            .s3
            .upload_part()
            .bucket(&upload.repo)
            .key(format!("{}/{}", upload.branch, upload.path))
            .upload_id(&upload.upload_id)
            .part_number(number)
            .body(body)
            .send()
            .await
            .map_err(classify)?;
        Ok(part.e_tag().unwrap_or_default().to_string())
    }

    pub async fn complete_multipart(&self, upload: &MultipartUpload, parts: &[(u32, String)]) -> Result<()> {
        let parts = parts
            .iter()
            .map(|(number, etag)| {
                CompletedPart::builder()
                    .part_number(i32::try_from(*number).unwrap_or(i32::MAX))
                    .e_tag(etag)
                    .build()
            })
            .collect();
        self.s3
            .complete_multipart_upload()
            .bucket(&upload.repo)
            .key(format!("{}/{}", upload.branch, upload.path))
            .upload_id(&upload.upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    pub async fn abort_multipart(&self, upload: &MultipartUpload) -> Result<()> {
        self.s3
            .abort_multipart_upload()
            .bucket(&upload.repo)
            .key(format!("{}/{}", upload.branch, upload.path))
            .upload_id(&upload.upload_id)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn put_parts(
        &self,
        repo: &str,
        key: &str,
        upload_id: &str,
        file: &Path,
        size: u64,
    ) -> Result<Vec<CompletedPart>> {
        use futures::stream::{StreamExt, TryStreamExt};
        let count = size.div_ceil(PART_SIZE);
        let parts = futures::stream::iter(0..count)
            .map(|index| async move {
                let offset = index * PART_SIZE;
                let length = PART_SIZE.min(size - offset);
                let body = ByteStream::read_from()
                    .path(file)
                    .offset(offset)
                    .length(aws_smithy_types::byte_stream::Length::Exact(length))
                    .build()
                    .await
                    .map_err(|e| LakeFsError::Transport(format!("reading {}: {e}", file.display())))?;
                // Part numbers start at 1 and stay below 10,000 for any file the staging budget allows.
                let number =
                    i32::try_from(index + 1).map_err(|_| LakeFsError::BadRequest(format!("{key}: too many parts")))?;
                let part = self
                    .s3
                    .upload_part()
                    .bucket(repo)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .body(body)
                    .send()
                    .await
                    .map_err(classify)?;
                Ok::<_, LakeFsError>(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(part.e_tag().map(str::to_string))
                        .build(),
                )
            })
            .buffered(PARTS_IN_FLIGHT)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(parts)
    }
}

/// Files above this size are uploaded in parts.
pub const MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
/// Size of one part (the last one may be smaller).
pub const PART_SIZE: u64 = 16 * 1024 * 1024;
/// Parts uploaded concurrently.
pub const PARTS_IN_FLIGHT: usize = 4;

fn classify<E: ProvideErrorMetadata + std::fmt::Debug>(err: SdkError<E>) -> LakeFsError {
    match &err {
        SdkError::TimeoutError(_) => LakeFsError::Timeout(format!("{err:?}")),
        SdkError::DispatchFailure(_) => LakeFsError::Transport(format!("{err:?}")),
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let message = service
                .err()
                .message()
                .or(service.err().code())
                .unwrap_or("")
                .to_string();
            LakeFsError::from_response(status, message, service.raw().headers().get("retry-after"))
        }
        SdkError::ResponseError(_) => LakeFsError::Protocol(format!("{err:?}")),
        _ => LakeFsError::Protocol(format!("{err:?}")),
    }
}

/// Bytes a `Content-Range: bytes FIRST-LAST/TOTAL` header says the response carries.
fn served_length(content_range: &str) -> Option<u64> {
    let (first, last) = content_range
        .strip_prefix("bytes ")?
        .split_once('/')?
        .0
        .split_once('-')?;
    let (first, last): (u64, u64) = (first.trim().parse().ok()?, last.trim().parse().ok()?);
    last.checked_sub(first).map(|n| n + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_gives_the_bytes_served() {
        assert_eq!(served_length("bytes 0-62322/62323"), Some(62323));
        assert_eq!(served_length("bytes 100-199/1000"), Some(100));
        assert_eq!(served_length("bytes */1000"), None);
        assert_eq!(served_length("bytes 9-3/10"), None);
        assert_eq!(served_length("items 0-1/2"), None);
    }

    #[test]
    fn gateway_url_drops_the_api_path() {
        assert_eq!(
            gateway_url("http://127.0.0.1:8000/api/v1").unwrap(),
            "http://127.0.0.1:8000"
        );
        assert_eq!(gateway_url("https://lake.example").unwrap(), "https://lake.example");
        assert_eq!(gateway_url("http://[::1]:9000/").unwrap(), "http://[::1]:9000");
    }
}
