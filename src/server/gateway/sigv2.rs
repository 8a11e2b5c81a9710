//! AWS Signature Version 2 (HMAC-SHA1), header form `Authorization: AWS <akid>:<signature>` and query form
//! (`AWSAccessKeyId`, `Signature`, `Expires`), lakefs-api.md §7.7.
//!
//! Still in use: boto3 presigns URLs with it by default. The string to sign is
//! `METHOD\nContent-MD5\nContent-Type\nDate-or-Expires\n<x-amz-* headers><resource>`, where the resource is the
//! raw request path (prefixed with `/bucket` for virtual-host requests) plus the classic sub-resources, sorted,
//! with decoded values. V2 never signs the body, so the payload is unsigned.

use axum::http::{header, HeaderMap, Method, Uri};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::error::{S3Error, S3ErrorCode, S3Result};
use super::sigv4::{Payload, Verified};
use crate::server::auth::{constant_time_eq, Credentials};

const MAX_CLOCK_SKEW_SECONDS: i64 = 15 * 60;

/// Query parameters that are part of the signed resource.
const SUB_RESOURCES: &[&str] = &[
    "acl",
    "cors",
    "delete",
    "lifecycle",
    "location",
    "logging",
    "notification",
    "partNumber",
    "policy",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn unknown_key() -> S3Error {
    S3Error::with_message(
        S3ErrorCode::AccessDenied,
        "The AWS access key Id you provided does not exist in our records.",
    )
}

/// Verifies a V2 header-form request (`authorization` is the header value after `AWS `).
pub fn verify_header(
    credentials: &Credentials,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    virtual_bucket: Option<&str>,
    authorization: &str,
    now: i64,
) -> S3Result<Verified> {
    let (access_key_id, signature) = authorization
        .trim()
        .rsplit_once(':')
        .ok_or_else(|| S3Error::with_message(S3ErrorCode::AuthorizationHeaderMalformed, "malformed V2 header"))?;
    let secret = credentials.secret(access_key_id).ok_or_else(unknown_key)?;
    let date_text = header_str(headers, "x-amz-date");
    let date_text = if date_text.is_empty() {
        header_str(headers, header::DATE.as_str())
    } else {
        date_text
    };
    let date = httpdate::parse_http_date(date_text)
        .map_err(|_| S3Error::with_message(S3ErrorCode::AccessDenied, "missing or invalid request date"))?;
    let date = date
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    if now - date > MAX_CLOCK_SKEW_SECONDS {
        return Err(S3Error::new(S3ErrorCode::RequestTimeTooSkewed));
    }
    if date - now > MAX_CLOCK_SKEW_SECONDS {
        return Err(S3Error::with_message(
            S3ErrorCode::AccessDenied,
            "Request is not valid yet",
        ));
    }
    let date_line = header_str(headers, header::DATE.as_str());
    check(secret, method, uri, headers, virtual_bucket, date_line, signature)?;
    Ok(Verified {
        access_key_id: access_key_id.to_string(),
        payload: Payload::Unsigned,
    })
}

/// Verifies a V2 presigned URL.
pub fn verify_query(
    credentials: &Credentials,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    virtual_bucket: Option<&str>,
    params: &[(String, String)],
    now: i64,
) -> S3Result<Verified> {
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let missing = |name: &str| S3Error::with_message(S3ErrorCode::AccessDenied, format!("missing {name}"));
    let access_key_id = get("AWSAccessKeyId").ok_or_else(|| missing("AWSAccessKeyId"))?;
    let signature = get("Signature").ok_or_else(|| missing("Signature"))?;
    let expires_text = get("Expires").ok_or_else(|| missing("Expires"))?;
    let expires: i64 = expires_text
        .parse()
        .map_err(|_| S3Error::with_message(S3ErrorCode::AccessDenied, "invalid Expires"))?;
    let secret = credentials.secret(access_key_id).ok_or_else(unknown_key)?;
    if now > expires {
        return Err(S3Error::with_message(S3ErrorCode::AccessDenied, "Request has expired"));
    }
    check(secret, method, uri, headers, virtual_bucket, expires_text, signature)?;
    Ok(Verified {
        access_key_id: access_key_id.to_string(),
        payload: Payload::Unsigned,
    })
}

fn check(
    secret: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    virtual_bucket: Option<&str>,
    date_line: &str,
    provided: &str,
) -> S3Result<()> {
    let string_to_sign = string_to_sign(method, uri, headers, virtual_bucket, date_line);
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(string_to_sign.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    if constant_time_eq(expected.as_bytes(), provided.as_bytes()) {
        Ok(())
    } else {
        tracing::debug!(%string_to_sign, "sigv2 did not match");
        Err(S3Error::new(S3ErrorCode::SignatureDoesNotMatch))
    }
}

fn string_to_sign(method: &Method, uri: &Uri, headers: &HeaderMap, virtual_bucket: Option<&str>, date: &str) -> String {
    let mut amz_headers: Vec<(String, String)> = Vec::new();
    for (name, value) in headers {
        let name = name.as_str();
        if !name.starts_with("x-amz-") {
            continue;
        }
        let value = String::from_utf8_lossy(value.as_bytes()).trim().to_string();
        match amz_headers.iter_mut().find(|(n, _)| n == name) {
            Some((_, existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            None => amz_headers.push((name.to_string(), value)),
        }
    }
    amz_headers.sort();
    let mut out = format!(
        "{}\n{}\n{}\n{}\n",
        method.as_str(),
        header_str(headers, "content-md5"),
        header_str(headers, header::CONTENT_TYPE.as_str()),
        date
    );
    for (name, value) in amz_headers {
        out.push_str(&format!("{name}:{value}\n"));
    }
    if let Some(bucket) = virtual_bucket {
        out.push('/');
        out.push_str(bucket);
    }
    out.push_str(if uri.path().is_empty() { "/" } else { uri.path() });
    let mut sub_resources: Vec<(String, Option<String>)> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| {
            let (key, value) = match pair.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (pair, None),
            };
            SUB_RESOURCES.contains(&key).then(|| {
                let value = value.map(|v| percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned());
                (key.to_string(), value)
            })
        })
        .collect();
    sub_resources.sort();
    if !sub_resources.is_empty() {
        let joined: Vec<String> = sub_resources
            .into_iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => k,
            })
            .collect();
        out.push('?');
        out.push_str(&joined.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The "Object GET" example of the AWS SigV2 documentation.
    #[test]
    fn aws_documentation_example() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let date = "Tue, 27 Mar 2007 19:36:42 +0000";
        let mut headers = HeaderMap::new();
        headers.insert("date", date.parse().unwrap());
        let uri: Uri = "/photos/puppy.jpg".parse().unwrap();
        let bucket = Some("awsexamplebucket1");
        let sts = string_to_sign(&Method::GET, &uri, &headers, bucket, date);
        assert_eq!(
            sts,
            "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/awsexamplebucket1/photos/puppy.jpg"
        );
        assert!(check(
            secret,
            &Method::GET,
            &uri,
            &headers,
            bucket,
            date,
            "qgk2+6Sv9/oM7G3qLEjTH1a1l1g="
        )
        .is_ok());
        let err = check(
            secret,
            &Method::PUT,
            &uri,
            &headers,
            bucket,
            date,
            "qgk2+6Sv9/oM7G3qLEjTH1a1l1g=",
        );
        assert_eq!(err.unwrap_err().code, S3ErrorCode::SignatureDoesNotMatch);
    }

    #[test]
    fn presigned_expiry() {
        let mut credentials = Credentials::new();
        credentials.add("AKID", "secret");
        let uri: Uri = "/b/main/k".parse().unwrap();
        let params = vec![
            ("AWSAccessKeyId".to_string(), "AKID".to_string()),
            ("Signature".to_string(), "x".to_string()),
            ("Expires".to_string(), "100".to_string()),
        ];
        let err = verify_query(&credentials, &Method::GET, &uri, &HeaderMap::new(), None, &params, 101).unwrap_err();
        assert_eq!(err.message, "Request has expired");
        let err = verify_query(&credentials, &Method::GET, &uri, &HeaderMap::new(), None, &params, 99).unwrap_err();
        assert_eq!(err.code, S3ErrorCode::SignatureDoesNotMatch);
    }

    #[test]
    fn sub_resources_are_signed_sorted() {
        let uri: Uri = "/b/main/k?uploadId=abc&partNumber=2&x-id=UploadPart".parse().unwrap();
        let sts = string_to_sign(&Method::PUT, &uri, &HeaderMap::new(), None, "123");
        assert_eq!(sts, "PUT\n\n\n123\n/b/main/k?partNumber=2&uploadId=abc");
    }
}
