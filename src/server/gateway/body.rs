//! Request bodies: turning the HTTP body into the object's bytes, and checking what the client promised.
//!
//! A body reaches storage as a stream, never whole. What was promised about it is checked after the bytes went
//! through: the signed `x-amz-content-sha256` (the blob id *is* the SHA-256, so the store's [`BlobInfo`] answers
//! it), `Content-MD5` (→ `BadDigest`), and a flexible checksum header or trailer ([`super::checksum`]: CRC32,
//! CRC32C and SHA-1 computed while streaming, SHA-256 compared with the blob id). A failed check leaves the blob
//! unreferenced, so nothing becomes visible. Stream failures (client hung up, malformed chunk, bad chunk signature)
//! are recorded in a shared [`BodyReport`] as the precise S3 error, because by the time the store reports a failed
//! write the error has become a plain `io::Error`.

use std::io;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::HeaderMap;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use md5::Md5;
use sha2::{Digest, Sha256};

use super::checksum::{Algorithm, Checksummer};
use super::chunked::{self, ByteStream, ChunkMode};
use super::error::{S3Error, S3ErrorCode, S3Result};
use super::sigv4::Payload;
use crate::server::store::{BlobInfo, StoreError};

#[derive(Default)]
struct ReportInner {
    error: Option<S3Error>,
    trailers: Vec<(String, String)>,
}

/// Shared between a body stream and the handler consuming it.
#[derive(Clone, Default)]
pub struct BodyReport(Arc<Mutex<ReportInner>>);

impl BodyReport {
    fn lock(&self) -> std::sync::MutexGuard<'_, ReportInner> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records the first failure of the body.
    pub fn fail(&self, error: S3Error) {
        let mut inner = self.lock();
        if inner.error.is_none() {
            inner.error = Some(error);
        }
    }

    pub fn error(&self) -> Option<S3Error> {
        self.lock().error.clone()
    }

    pub fn set_trailers(&self, trailers: Vec<(String, String)>) {
        self.lock().trailers = trailers;
    }

    pub fn trailers(&self) -> Vec<(String, String)> {
        self.lock().trailers.clone()
    }
}

/// What must be checked about a request body once it has been consumed.
pub struct BodyCheck {
    report: BodyReport,
    expected_sha256: Option<String>,
    expected_md5: Option<Vec<u8>>,
    checksum_sha256_header: Option<String>,
    /// A streamed checksum and the header value claiming it (`None`: the claim comes as a trailer).
    streamed_checksum: Option<(Checksummer, Option<String>)>,
    announces_sha256_trailer: bool,
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Turns the HTTP body into the object's byte stream (decoding aws-chunked) and the checks to run afterwards.
pub fn request_body(body: Body, headers: &HeaderMap, payload: &Payload) -> S3Result<(ByteStream, BodyCheck)> {
    let expected_md5 = match header_str(headers, "content-md5") {
        Some(value) => {
            let digest = base64::engine::general_purpose::STANDARD
                .decode(value.trim())
                .ok()
                .filter(|d| d.len() == 16)
                .ok_or_else(|| S3Error::new(S3ErrorCode::InvalidDigest))?;
            Some(digest)
        }
        None => None,
    };
    let report = BodyReport::default();
    let raw = plain(body, report.clone());
    let decoded_length = match header_str(headers, "x-amz-decoded-content-length") {
        Some(v) => Some(v.trim().parse::<u64>().map_err(|_| {
            S3Error::with_message(S3ErrorCode::InvalidArgument, "invalid x-amz-decoded-content-length")
        })?),
        None => None,
    };
    let (stream, expected_sha256) = match payload {
        Payload::Unsigned => (raw, None),
        Payload::Sha256(hash) => (raw, Some(hash.clone())),
        Payload::StreamingSigned(signer) => (
            chunked::decode(raw, ChunkMode::Signed(signer.clone()), decoded_length, report.clone()),
            None,
        ),
        Payload::StreamingSignedTrailer(signer) => (
            chunked::decode(
                raw,
                ChunkMode::SignedTrailer(signer.clone()),
                decoded_length,
                report.clone(),
            ),
            None,
        ),
        Payload::StreamingUnsignedTrailer => (
            chunked::decode(raw, ChunkMode::UnsignedTrailer, decoded_length, report.clone()),
            None,
        ),
    };
    // A flexible checksum in a header, or announced as a trailer, is computed as the bytes pass.
    let claimed_in_header = headers.iter().find_map(|(name, value)| {
        Algorithm::from_header_name(name.as_str()).map(|a| (a, Some(String::from_utf8_lossy(value.as_bytes()).into())))
    });
    let announced_trailer = header_str(headers, "x-amz-trailer")
        .and_then(|names| names.split(',').find_map(Algorithm::from_header_name))
        .map(|a| (a, None));
    let streamed_checksum = claimed_in_header
        .or(announced_trailer)
        .map(|(algorithm, claim)| (Checksummer::new(algorithm), claim));
    let stream = match &streamed_checksum {
        Some((checksummer, _)) => {
            let checksummer = checksummer.clone();
            Box::pin(stream.inspect_ok(move |bytes| checksummer.update(bytes))) as ByteStream
        }
        None => stream,
    };
    let announces_sha256_trailer = header_str(headers, "x-amz-trailer").is_some_and(|names| {
        names
            .split(',')
            .any(|n| n.trim().eq_ignore_ascii_case("x-amz-checksum-sha256"))
    });
    let check = BodyCheck {
        announces_sha256_trailer,
        streamed_checksum,
        report,
        expected_sha256,
        expected_md5,
        checksum_sha256_header: header_str(headers, "x-amz-checksum-sha256").map(str::to_string),
    };
    Ok((stream, check))
}

impl BodyCheck {
    /// True when the body's SHA-256 must be known to verify it (a signed payload hash or a SHA-256 checksum).
    pub fn needs_sha256(&self) -> bool {
        self.expected_sha256.is_some() || self.checksum_sha256_header.is_some() || self.announces_sha256_trailer
    }

    /// The body's own failure, if it had one.
    pub fn body_error(&self) -> Option<S3Error> {
        self.report.error()
    }

    /// The S3 error for a failed blob write: the body's own failure if it had one.
    pub fn write_error(&self, err: StoreError) -> S3Error {
        match self.report.error() {
            Some(body_error) => body_error,
            None => match err {
                StoreError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    S3Error::new(S3ErrorCode::IncompleteBody)
                }
                other => S3Error::from_write(other),
            },
        }
    }

    /// Checks the promises about the body against what was actually written.
    pub fn verify(&self, sha256_hex: &str, md5_hex: &str) -> S3Result<()> {
        if let Some(error) = self.report.error() {
            return Err(error);
        }
        if let Some(expected) = &self.expected_sha256 {
            if !expected.eq_ignore_ascii_case(sha256_hex) {
                return Err(S3Error::new(S3ErrorCode::XAmzContentSha256Mismatch));
            }
        }
        if let Some(expected) = &self.expected_md5 {
            if hex::encode(expected) != md5_hex {
                return Err(S3Error::new(S3ErrorCode::BadDigest));
            }
        }
        if let Some((checksummer, header_claim)) = &self.streamed_checksum {
            let algorithm = checksummer.algorithm();
            let claim = header_claim.clone().or_else(|| {
                let trailers = self.report.trailers();
                trailers
                    .into_iter()
                    .find(|(name, _)| name == algorithm.header_name())
                    .map(|(_, v)| v)
            });
            // A trailer that was announced but never sent leaves nothing to compare.
            if let Some(claim) = claim {
                if claim.trim() != checksummer.base64() {
                    return Err(S3Error::with_message(
                        S3ErrorCode::BadDigest,
                        format!(
                            "The {} you specified did not match the calculated checksum.",
                            algorithm.display_name()
                        ),
                    ));
                }
            }
        }
        let trailer_sha256 = self
            .report
            .trailers()
            .into_iter()
            .find(|(name, _)| name == "x-amz-checksum-sha256")
            .map(|(_, v)| v);
        for claimed in self.checksum_sha256_header.iter().chain(trailer_sha256.iter()) {
            let matches = base64::engine::general_purpose::STANDARD
                .decode(claimed.trim())
                .is_ok_and(|digest| hex::encode(digest) == sha256_hex);
            if !matches {
                return Err(S3Error::with_message(
                    S3ErrorCode::BadDigest,
                    "The SHA256 you specified did not match the calculated checksum.",
                ));
            }
        }
        Ok(())
    }

    pub fn verify_blob(&self, info: &BlobInfo) -> S3Result<()> {
        self.verify(&info.id, &info.md5)
    }
}

/// Collects a small body (an XML document) of at most `limit` bytes and verifies it.
pub async fn collect(body: Body, headers: &HeaderMap, payload: &Payload, limit: usize) -> S3Result<Bytes> {
    let (mut stream, check) = request_body(body, headers, payload)?;
    let mut out = BytesMut::new();
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|_| {
            check
                .report
                .error()
                .unwrap_or_else(|| S3Error::new(S3ErrorCode::IncompleteBody))
        })?;
        if out.len() + piece.len() > limit {
            return Err(S3Error::with_message(
                S3ErrorCode::MalformedXML,
                "request body too large",
            ));
        }
        out.extend_from_slice(&piece);
    }
    let sha256 = hex::encode(Sha256::digest(&out));
    let md5 = hex::encode(Md5::digest(&out));
    check.verify(&sha256, &md5)?;
    Ok(out.freeze())
}

/// The raw HTTP body as an `io::Error` stream; a transport failure is recorded as `IncompleteBody`.
fn plain(body: Body, report: BodyReport) -> ByteStream {
    Box::pin(body.into_data_stream().map_err(move |e| {
        report.fail(S3Error::new(S3ErrorCode::IncompleteBody));
        io::Error::new(io::ErrorKind::UnexpectedEof, e)
    }))
}
