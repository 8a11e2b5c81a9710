//! AWS Signature Version 4 verification (header and presigned-query forms), lakefs-api.md §7.7.
//!
//! The canonical request is rebuilt exactly as AWS defines it:
//! `METHOD\nURI\nQUERY\nHEADERS\n\nSIGNED_HEADERS\nPAYLOAD_HASH`. Two details decide interoperability:
//! - the URI: S3 signers encode each path byte once with the AWS "unreserved" rule. Clients disagree on which
//!   optional characters they escape on the wire, so the server tries the canonical re-encoding of the decoded path
//!   first and the raw path exactly as sent second; either matching is a valid signature.
//! - the payload hash: whatever `x-amz-content-sha256` says (a hex digest, `UNSIGNED-PAYLOAD` or a `STREAMING-*`
//!   mode); presigned URLs sign `UNSIGNED-PAYLOAD`. A hex digest is a promise about the body, so it is returned in
//!   [`Payload::Sha256`] and checked by the caller after streaming the body.
//!
//! The signing key uses whatever region and service the client put in its scope (lakeFS does not compare them with
//! the configured region). Time: the request date must agree with the scope date and lie within 15 minutes of now
//! (header form), or `X-Amz-Date + X-Amz-Expires` must not be past (presigned form).

use axum::http::{header, HeaderMap, Method, Uri};
use base64::Engine;
use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::error::{S3Error, S3ErrorCode, S3Result};
use crate::server::auth::{constant_time_eq, Credentials};

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
pub const STREAMING_SIGNED: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
pub const STREAMING_SIGNED_TRAILER: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
pub const STREAMING_UNSIGNED_TRAILER: &str = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
/// SHA-256 of the empty string, part of every chunk's string to sign.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

const MAX_CLOCK_SKEW_SECONDS: i64 = 15 * 60;
const MAX_PRESIGN_EXPIRES_SECONDS: i64 = 604_800;

/// AWS URI encoding: everything but `A-Z a-z 0-9 - _ . ~` is escaped.
const AWS_QUERY_SET: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
/// Path form: `/` stays.
const AWS_PATH_SET: &AsciiSet = &AWS_QUERY_SET.remove(b'/');

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// What the signature says about the body.
#[derive(Clone, Debug)]
pub enum Payload {
    /// Not covered by the signature.
    Unsigned,
    /// Lowercase hex SHA-256 the body must hash to.
    Sha256(String),
    /// aws-chunked with chained chunk signatures.
    StreamingSigned(ChunkSigner),
    /// aws-chunked with chained chunk signatures and a signed trailer.
    StreamingSignedTrailer(ChunkSigner),
    /// aws-chunked without chunk signatures, with trailing checksum headers.
    StreamingUnsignedTrailer,
}

/// Everything needed to verify the chunk signatures of a `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` body.
#[derive(Clone)]
pub struct ChunkSigner {
    signing_key: Vec<u8>,
    datetime: String,
    scope: String,
    /// The request's own signature: the `previous` of the first chunk.
    pub seed_signature: String,
}

impl std::fmt::Debug for ChunkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkSigner")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl ChunkSigner {
    /// A signer for a request signed with `secret` at `datetime` (`yyyymmddThhmmssZ`) under `scope`
    /// (`date/region/service/aws4_request`), whose own signature is `seed_signature`.
    pub fn new(secret: &str, datetime: &str, scope: &str, seed_signature: &str) -> Self {
        ChunkSigner {
            signing_key: signing_key(secret, scope),
            datetime: datetime.to_string(),
            scope: scope.to_string(),
            seed_signature: seed_signature.to_string(),
        }
    }

    /// Signature of one chunk whose data hashes to `chunk_sha256_hex`.
    pub fn chunk_signature(&self, previous: &str, chunk_sha256_hex: &str) -> String {
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{}\n{}\n{}",
            self.datetime, self.scope, previous, EMPTY_SHA256, chunk_sha256_hex
        );
        hex::encode(hmac(&self.signing_key, string_to_sign.as_bytes()))
    }

    /// Signature of the trailer block (`name:value\n` lines) after the last chunk.
    pub fn trailer_signature(&self, previous: &str, trailer_sha256_hex: &str) -> String {
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256-TRAILER\n{}\n{}\n{}\n{}",
            self.datetime, self.scope, previous, trailer_sha256_hex
        );
        hex::encode(hmac(&self.signing_key, string_to_sign.as_bytes()))
    }
}

/// A request whose signature checked out.
#[derive(Clone, Debug)]
pub struct Verified {
    pub access_key_id: String,
    pub payload: Payload,
}

struct SignatureParts {
    access_key_id: String,
    scope_date: String,
    scope: String,
    signed_headers: Vec<String>,
    signature: String,
}

fn malformed(message: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::AuthorizationHeaderMalformed, message)
}

fn parse_credential(credential: &str) -> S3Result<(String, String, String)> {
    // AKID/yyyymmdd/region/service/aws4_request
    let parts: Vec<&str> = credential.split('/').collect();
    if parts.len() < 5 || parts[parts.len() - 1] != "aws4_request" {
        return Err(malformed("malformed credential scope"));
    }
    let n = parts.len();
    let access_key_id = parts[..n - 4].join("/");
    let scope_date = parts[n - 4].to_string();
    let scope = parts[n - 4..].join("/");
    Ok((access_key_id, scope_date, scope))
}

fn parse_authorization(value: &str) -> S3Result<SignatureParts> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| malformed("unsupported signature algorithm"))?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for field in rest.split(',') {
        let Some((name, value)) = field.trim().split_once('=') else {
            continue;
        };
        match name.trim() {
            "Credential" => credential = Some(value.trim()),
            "SignedHeaders" => signed_headers = Some(value.trim()),
            "Signature" => signature = Some(value.trim()),
            _ => {}
        }
    }
    let (access_key_id, scope_date, scope) = parse_credential(credential.ok_or_else(|| malformed("no Credential"))?)?;
    Ok(SignatureParts {
        access_key_id,
        scope_date,
        scope,
        signed_headers: split_signed_headers(signed_headers.ok_or_else(|| malformed("no SignedHeaders"))?),
        signature: signature.ok_or_else(|| malformed("no Signature"))?.to_ascii_lowercase(),
    })
}

fn split_signed_headers(value: &str) -> Vec<String> {
    value
        .split(';')
        .filter(|h| !h.is_empty())
        .map(|h| h.trim().to_ascii_lowercase())
        .collect()
}

fn parse_amz_date(value: &str) -> S3Result<OffsetDateTime> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(value, format)
        .map(|t| t.assume_utc())
        .map_err(|_| S3Error::with_message(S3ErrorCode::AccessDenied, "invalid X-Amz-Date"))
}

fn format_amz_date(t: OffsetDateTime) -> String {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    t.format(format).unwrap_or_default()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Verifies the request's SigV4 signature (either form) or HTTP Basic credentials.
///
/// `Ok(None)` means the request carries no credentials at all.
pub fn verify(
    credentials: &Credentials,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    now: OffsetDateTime,
) -> S3Result<Option<Verified>> {
    let query = uri.query().unwrap_or("");
    let authorization = header_str(headers, header::AUTHORIZATION.as_str());
    if let Some(auth) = authorization {
        if auth.starts_with(ALGORITHM) {
            return verify_header_form(credentials, method, uri, headers, auth, now).map(Some);
        }
        if auth.starts_with("AWS4") || auth.starts_with("AWS ") {
            // SigV4a and friends; V2 is verified by the caller before this function is reached.
            return Err(S3Error::with_message(
                S3ErrorCode::AccessDenied,
                "unsupported signature algorithm",
            ));
        }
        if let Some(basic) = auth.strip_prefix("Basic ") {
            return verify_basic(credentials, headers, basic).map(Some);
        }
    }
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if params.iter().any(|(k, _)| k == "X-Amz-Credential") {
        return verify_query_form(credentials, method, uri, headers, &params, now).map(Some);
    }
    if params.iter().any(|(k, _)| k == "AWSAccessKeyId") {
        return Err(S3Error::with_message(
            S3ErrorCode::AccessDenied,
            "signature version 2 is not supported",
        ));
    }
    Ok(None)
}

fn verify_basic(credentials: &Credentials, headers: &HeaderMap, basic: &str) -> S3Result<Verified> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| S3Error::new(S3ErrorCode::AccessDenied))?;
    let (akid, secret) = decoded
        .split_once(':')
        .ok_or_else(|| S3Error::new(S3ErrorCode::AccessDenied))?;
    if !credentials.verify(akid, secret) {
        return Err(S3Error::new(S3ErrorCode::AccessDenied));
    }
    let payload = match header_str(headers, "x-amz-content-sha256") {
        Some(h) if is_hex_sha256(h) => Payload::Sha256(h.to_ascii_lowercase()),
        _ => Payload::Unsigned,
    };
    Ok(Verified {
        access_key_id: akid.to_string(),
        payload,
    })
}

fn is_hex_sha256(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

fn verify_header_form(
    credentials: &Credentials,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    authorization: &str,
    now: OffsetDateTime,
) -> S3Result<Verified> {
    let parts = parse_authorization(authorization)?;
    let secret = credentials.secret(&parts.access_key_id).ok_or_else(|| {
        S3Error::with_message(
            S3ErrorCode::AccessDenied,
            "The AWS access key Id you provided does not exist in our records.",
        )
    })?;
    let amz_date = match header_str(headers, "x-amz-date") {
        Some(d) => d.to_string(),
        None => {
            let date = header_str(headers, header::DATE.as_str())
                .and_then(|d| httpdate::parse_http_date(d).ok())
                .ok_or_else(|| S3Error::with_message(S3ErrorCode::AccessDenied, "no request date"))?;
            format_amz_date(OffsetDateTime::from(date))
        }
    };
    let request_time = parse_amz_date(&amz_date)?;
    check_scope_date(&amz_date, &parts.scope_date)?;
    let skew = (now - request_time).whole_seconds();
    if skew > MAX_CLOCK_SKEW_SECONDS {
        return Err(S3Error::new(S3ErrorCode::RequestTimeTooSkewed));
    }
    if skew < -MAX_CLOCK_SKEW_SECONDS {
        return Err(S3Error::with_message(
            S3ErrorCode::AccessDenied,
            "Request is not valid yet",
        ));
    }
    let content_sha256 = header_str(headers, "x-amz-content-sha256")
        .unwrap_or(UNSIGNED_PAYLOAD)
        .to_string();
    let query = canonical_query(uri.query().unwrap_or(""), false);
    let signing_key = signing_key(secret, &parts.scope);
    let signature = check_signature(
        method,
        uri,
        headers,
        &query,
        &parts.signed_headers,
        &content_sha256,
        &amz_date,
        &parts.scope,
        &signing_key,
        &parts.signature,
    )?;
    let signer = ChunkSigner {
        signing_key,
        datetime: amz_date,
        scope: parts.scope,
        seed_signature: signature,
    };
    let payload = match content_sha256.as_str() {
        UNSIGNED_PAYLOAD => Payload::Unsigned,
        STREAMING_SIGNED => Payload::StreamingSigned(signer),
        STREAMING_SIGNED_TRAILER => Payload::StreamingSignedTrailer(signer),
        STREAMING_UNSIGNED_TRAILER => Payload::StreamingUnsignedTrailer,
        h if is_hex_sha256(h) => Payload::Sha256(h.to_ascii_lowercase()),
        other => {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                format!("unsupported x-amz-content-sha256 value {other:?}"),
            ))
        }
    };
    Ok(Verified {
        access_key_id: parts.access_key_id,
        payload,
    })
}

fn verify_query_form(
    credentials: &Credentials,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    params: &[(String, String)],
    now: OffsetDateTime,
) -> S3Result<Verified> {
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let missing = |name: &str| S3Error::with_message(S3ErrorCode::AccessDenied, format!("missing {name}"));
    if get("X-Amz-Algorithm") != Some(ALGORITHM) {
        return Err(S3Error::with_message(
            S3ErrorCode::AccessDenied,
            "unsupported X-Amz-Algorithm",
        ));
    }
    let (access_key_id, scope_date, scope) =
        parse_credential(get("X-Amz-Credential").ok_or_else(|| missing("X-Amz-Credential"))?)?;
    let amz_date = get("X-Amz-Date").ok_or_else(|| missing("X-Amz-Date"))?.to_string();
    let expires: i64 = get("X-Amz-Expires")
        .ok_or_else(|| missing("X-Amz-Expires"))?
        .parse()
        .map_err(|_| S3Error::with_message(S3ErrorCode::AccessDenied, "invalid X-Amz-Expires"))?;
    if !(0..=MAX_PRESIGN_EXPIRES_SECONDS).contains(&expires) {
        return Err(S3Error::with_message(
            S3ErrorCode::AccessDenied,
            "X-Amz-Expires must be at most 604800",
        ));
    }
    let signed_headers =
        split_signed_headers(get("X-Amz-SignedHeaders").ok_or_else(|| missing("X-Amz-SignedHeaders"))?);
    let provided = get("X-Amz-Signature")
        .ok_or_else(|| missing("X-Amz-Signature"))?
        .to_ascii_lowercase();
    let secret = credentials.secret(&access_key_id).ok_or_else(|| {
        S3Error::with_message(
            S3ErrorCode::AccessDenied,
            "The AWS access key Id you provided does not exist in our records.",
        )
    })?;
    let request_time = parse_amz_date(&amz_date)?;
    check_scope_date(&amz_date, &scope_date)?;
    if (request_time - now).whole_seconds() > MAX_CLOCK_SKEW_SECONDS {
        return Err(S3Error::with_message(
            S3ErrorCode::AccessDenied,
            "Request is not valid yet",
        ));
    }
    if (now - request_time).whole_seconds() > expires {
        return Err(S3Error::with_message(S3ErrorCode::AccessDenied, "Request has expired"));
    }
    // Presigned URLs sign UNSIGNED-PAYLOAD unless the URL itself carries a payload hash.
    let content_sha256 = get("X-Amz-Content-Sha256").unwrap_or(UNSIGNED_PAYLOAD).to_string();
    let query = canonical_query(uri.query().unwrap_or(""), true);
    let signing_key = signing_key(secret, &scope);
    check_signature(
        method,
        uri,
        headers,
        &query,
        &signed_headers,
        &content_sha256,
        &amz_date,
        &scope,
        &signing_key,
        &provided,
    )?;
    let payload = if is_hex_sha256(&content_sha256) {
        Payload::Sha256(content_sha256.to_ascii_lowercase())
    } else {
        Payload::Unsigned
    };
    Ok(Verified { access_key_id, payload })
}

fn check_scope_date(amz_date: &str, scope_date: &str) -> S3Result<()> {
    if amz_date.get(..8) != Some(scope_date) {
        return Err(S3Error::with_message(
            S3ErrorCode::AuthorizationHeaderMalformed,
            "credential scope date does not match the request date",
        ));
    }
    Ok(())
}

fn signing_key(secret: &str, scope: &str) -> Vec<u8> {
    // scope = date/region/service/aws4_request
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in scope.split('/') {
        key = hmac(&key, part.as_bytes());
    }
    key
}

/// Computes the signature over each candidate canonical URI and returns the one that matched.
#[allow(clippy::too_many_arguments)]
fn check_signature(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    canonical_query: &str,
    signed_headers: &[String],
    payload_hash: &str,
    amz_date: &str,
    scope: &str,
    signing_key: &[u8],
    provided: &str,
) -> S3Result<String> {
    let canonical_headers = canonical_headers(headers, uri, signed_headers);
    let signed = signed_headers.join(";");
    for path in canonical_uri_candidates(uri.path()) {
        let canonical_request = format!(
            "{method}\n{path}\n{canonical_query}\n{canonical_headers}\n{signed}\n{payload_hash}",
            method = method.as_str()
        );
        let string_to_sign = format!(
            "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
            sha256_hex(canonical_request.as_bytes())
        );
        let expected = hex::encode(hmac(signing_key, string_to_sign.as_bytes()));
        if constant_time_eq(expected.as_bytes(), provided.as_bytes()) {
            return Ok(expected);
        }
        tracing::debug!(%canonical_request, "sigv4 candidate did not match");
    }
    Err(S3Error::new(S3ErrorCode::SignatureDoesNotMatch))
}

fn canonical_uri_candidates(raw_path: &str) -> Vec<String> {
    let path = if raw_path.is_empty() { "/" } else { raw_path };
    let decoded: Vec<u8> = percent_decode_str(path).collect();
    let reencoded = percent_encoding::percent_encode(&decoded, AWS_PATH_SET).to_string();
    if reencoded == path {
        vec![reencoded]
    } else {
        vec![reencoded, path.to_string()]
    }
}

/// Decodes and re-encodes every parameter with the AWS rule, then sorts by name and value.
fn canonical_query(raw_query: &str, drop_signature: bool) -> String {
    let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw_query.as_bytes())
        .filter(|(k, _)| !(drop_signature && k == "X-Amz-Signature"))
        .map(|(k, v)| {
            (
                utf8_percent_encode(&k, AWS_QUERY_SET).to_string(),
                utf8_percent_encode(&v, AWS_QUERY_SET).to_string(),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn canonical_headers(headers: &HeaderMap, uri: &Uri, signed_headers: &[String]) -> String {
    let mut out = String::new();
    for name in signed_headers {
        let mut values: Vec<String> = headers
            .get_all(name.as_str())
            .iter()
            .map(|v| collapse_spaces(&String::from_utf8_lossy(v.as_bytes())))
            .collect();
        if values.is_empty() && name == "host" {
            if let Some(authority) = uri.authority() {
                values.push(authority.to_string());
            }
        }
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out
}

fn collapse_spaces(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn credentials() -> Credentials {
        let mut c = Credentials::new();
        c.add("AKIAIOSFODNN7EXAMPLE", SECRET);
        c
    }

    fn at(s: &str) -> OffsetDateTime {
        parse_amz_date(s).unwrap()
    }

    /// The "GET Object" example of the AWS SigV4 documentation for S3.
    fn aws_example_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("host", "examplebucket.s3.amazonaws.com".parse().unwrap());
        h.insert("range", "bytes=0-9".parse().unwrap());
        h.insert("x-amz-content-sha256", EMPTY_SHA256.parse().unwrap());
        h.insert("x-amz-date", "20130524T000000Z".parse().unwrap());
        h.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
                .parse()
                .unwrap(),
        );
        h
    }

    #[test]
    fn aws_documentation_example_verifies() {
        let uri: Uri = "/test.txt".parse().unwrap();
        let verified = verify(
            &credentials(),
            &Method::GET,
            &uri,
            &aws_example_headers(),
            at("20130524T000500Z"),
        )
        .unwrap();
        let verified = verified.unwrap();
        assert_eq!(verified.access_key_id, "AKIAIOSFODNN7EXAMPLE");
        assert!(matches!(verified.payload, Payload::Sha256(ref h) if h == EMPTY_SHA256));
    }

    #[test]
    fn tampered_request_fails() {
        let uri: Uri = "/test2.txt".parse().unwrap();
        let err = verify(
            &credentials(),
            &Method::GET,
            &uri,
            &aws_example_headers(),
            at("20130524T000500Z"),
        )
        .unwrap_err();
        assert_eq!(err.code, S3ErrorCode::SignatureDoesNotMatch);
    }

    #[test]
    fn skew_and_unknown_key() {
        let uri: Uri = "/test.txt".parse().unwrap();
        let err = verify(
            &credentials(),
            &Method::GET,
            &uri,
            &aws_example_headers(),
            at("20130524T003000Z"),
        )
        .unwrap_err();
        assert_eq!(err.code, S3ErrorCode::RequestTimeTooSkewed);
        let err = verify(
            &credentials(),
            &Method::GET,
            &uri,
            &aws_example_headers(),
            at("20130523T233000Z"),
        )
        .unwrap_err();
        assert_eq!(err.code, S3ErrorCode::AccessDenied);
        let err = verify(
            &Credentials::new(),
            &Method::GET,
            &uri,
            &aws_example_headers(),
            at("20130524T000000Z"),
        )
        .unwrap_err();
        assert_eq!(err.code, S3ErrorCode::AccessDenied);
    }

    /// The presigned-URL example of the AWS documentation.
    #[test]
    fn aws_presigned_example_and_expiry() {
        let uri: Uri = "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("host", "examplebucket.s3.amazonaws.com".parse().unwrap());
        let ok = verify(&credentials(), &Method::GET, &uri, &h, at("20130524T100000Z")).unwrap();
        assert!(matches!(ok.unwrap().payload, Payload::Unsigned));
        let err = verify(&credentials(), &Method::GET, &uri, &h, at("20130525T000001Z")).unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (S3ErrorCode::AccessDenied, "Request has expired")
        );
    }

    /// The chunk-signature example of the AWS "signature calculation for streaming uploads" page.
    #[test]
    fn aws_chunk_signature_example() {
        let signer = ChunkSigner {
            signing_key: signing_key(SECRET, "20130524/us-east-1/s3/aws4_request"),
            datetime: "20130524T000000Z".into(),
            scope: "20130524/us-east-1/s3/aws4_request".into(),
            seed_signature: "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9".into(),
        };
        let first = signer.chunk_signature(&signer.seed_signature, &sha256_hex(&[b'a'; 65536]));
        assert_eq!(
            first,
            "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
        );
    }

    #[test]
    fn unsigned_request_is_none() {
        let uri: Uri = "/repo/main/x".parse().unwrap();
        assert!(verify(
            &credentials(),
            &Method::GET,
            &uri,
            &HeaderMap::new(),
            at("20130524T000000Z")
        )
        .unwrap()
        .is_none());
    }

    #[test]
    fn canonical_query_sorts_and_encodes() {
        assert_eq!(
            canonical_query("prefix=main%2Fa b&list-type=2&delimiter=%2F", false),
            "delimiter=%2F&list-type=2&prefix=main%2Fa%20b"
        );
        assert_eq!(canonical_query("uploads", false), "uploads=");
    }
}
