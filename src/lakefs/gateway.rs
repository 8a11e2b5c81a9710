//! Data path through the lakeFS S3 gateway, with aws-sdk-s3.
//!
//! Addressing is path-style (bucket = repository, key = `<ref>/<path>`), region `us-east-1`, static credentials
//! (the same access key as the REST API). The gateway listens on the same port as the REST API, at the server's
//! root: an endpoint given as `http://host:8000/api/v1` is reduced to `http://host:8000`. Reads are single ranged
//! GETs; the ETag comes back with the bytes so the caller can detect an object replaced since it was listed.

use std::ops::Range;

use aws_credential_types::Credentials;
use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::Client;

use super::{ClientConfig, LakeFsError, ObjectBytes, Result};

#[derive(Debug, Clone)]
pub struct GatewayClient {
    s3: Client,
}

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
        let data = response
            .body
            .collect()
            .await
            .map_err(|e| LakeFsError::Transport(format!("reading object body: {e}")))?
            .into_bytes();
        Ok(ObjectBytes { data, etag })
    }
}

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
            LakeFsError::from_status(status, message)
        }
        SdkError::ResponseError(_) => LakeFsError::Protocol(format!("{err:?}")),
        _ => LakeFsError::Protocol(format!("{err:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
