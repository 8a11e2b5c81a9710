//! Which requests are S3, which bucket/ref/key they name, and which operation they ask for.
//!
//! Routing follows lakefs-api.md §1.1: a `Host` equal to a gateway domain (path style) or a direct subdomain of one
//! (virtual-host style, `repo.s3.local.lakefs.io`), or any request carrying an AWS signature. Bucket = repository,
//! first key segment = ref, the rest = object path. The path is percent-decoded once; a key is an opaque string
//! from here on (`..` segments included) and is never used as a filesystem path.
//!
//! Operation selection is by method, URL shape and sub-resource query parameters, the way S3 does it; anything
//! recognisably S3 but not offered by lakeFS is [`Operation::NotSupported`] (405 `ERRLakeFSNotSupported`).

use axum::http::{HeaderMap, Method};
use percent_encoding::percent_decode_str;

use super::error::{S3Error, S3ErrorCode, S3Result};

/// True when the request carries an AWS signature (header or query form, SigV4 or SigV2).
pub fn is_signed(headers: &HeaderMap, query: &str) -> bool {
    if headers.contains_key("x-amz-signature") {
        return true;
    }
    if let Some(auth) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if auth.starts_with("AWS4") || auth.starts_with("AWS ") {
            return true;
        }
    }
    url::form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == "AWSAccessKeyId" || k == "X-Amz-Credential")
}

/// How the `Host` header relates to the configured gateway domains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostMatch {
    /// Host is a gateway domain: path-style addressing.
    Domain,
    /// Host is `<bucket>.<domain>`.
    VirtualHost(String),
    /// Any other host.
    Other,
}

pub fn match_host(host: Option<&str>, domains: &[String]) -> HostMatch {
    let Some(host) = host else { return HostMatch::Other };
    let host = strip_port(host).to_ascii_lowercase();
    for domain in domains {
        let domain = domain.to_ascii_lowercase();
        if host == domain {
            return HostMatch::Domain;
        }
        if let Some(label) = host.strip_suffix(&domain).and_then(|h| h.strip_suffix('.')) {
            if !label.is_empty() && !label.contains('.') {
                return HostMatch::VirtualHost(label.to_string());
            }
        }
    }
    HostMatch::Other
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // IPv6 literal: `[::1]:8000`.
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(name, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            name
        } else {
            host
        }
    })
}

/// What the URL names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Repository; `None` for the service (`GET /`).
    pub bucket: Option<String>,
    /// Ref (first key segment), when a key was given.
    pub reference: Option<String>,
    /// Object path after the ref; may be empty (`/repo/main/`).
    pub path: Option<String>,
}

impl Target {
    /// The full S3 key, `ref/path`, as clients see it.
    pub fn full_key(&self) -> Option<String> {
        match (&self.reference, &self.path) {
            (Some(r), Some(p)) => Some(format!("{r}/{p}")),
            (Some(r), None) => Some(r.clone()),
            _ => None,
        }
    }
}

/// Splits a raw (still percent-encoded) request path into bucket/ref/path.
pub fn parse_target(raw_path: &str, virtual_bucket: Option<&str>) -> S3Result<Target> {
    let decoded = percent_decode_str(raw_path)
        .decode_utf8()
        .map_err(|_| S3Error::with_message(S3ErrorCode::InvalidArgument, "object key is not valid UTF-8"))?;
    let rest = decoded.strip_prefix('/').unwrap_or(&decoded);
    let (bucket, key) = match virtual_bucket {
        Some(bucket) => (Some(bucket.to_string()), (!rest.is_empty()).then(|| rest.to_string())),
        None => {
            if rest.is_empty() {
                (None, None)
            } else {
                match rest.split_once('/') {
                    Some((b, k)) => (Some(b.to_string()), (!k.is_empty()).then(|| k.to_string())),
                    None => (Some(rest.to_string()), None),
                }
            }
        }
    };
    let (reference, path) = match key {
        None => (None, None),
        Some(key) => match key.split_once('/') {
            Some((r, p)) => (Some(r.to_string()), Some(p.to_string())),
            None => (Some(key), None),
        },
    };
    Ok(Target {
        bucket,
        reference,
        path,
    })
}

/// The operations the gateway knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    ListBuckets,
    HeadBucket,
    CreateBucket,
    GetBucketLocation,
    GetBucketVersioning,
    ListObjects,
    ListObjectsV2,
    ListMultipartUploads,
    DeleteObjects,
    HeadObject,
    GetObject,
    GetObjectTagging,
    PutObject,
    CopyObject,
    DeleteObject,
    CreateMultipartUpload,
    UploadPart,
    UploadPartCopy,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListParts,
    /// `repo/ref` or `repo/ref/` with no object path: 404 with an empty body.
    EmptyPath,
    NotSupported,
}

/// Sub-resources that make a request an operation lakeFS does not offer.
const UNSUPPORTED_SUBRESOURCES: &[&str] = &[
    "acl",
    "policy",
    "policyStatus",
    "lifecycle",
    "cors",
    "versions",
    "select",
    "restore",
    "torrent",
    "website",
    "logging",
    "notification",
    "replication",
    "encryption",
    "accelerate",
    "requestPayment",
    "analytics",
    "metrics",
    "inventory",
    "intelligent-tiering",
    "object-lock",
    "ownershipControls",
    "publicAccessBlock",
    "retention",
    "legal-hold",
    "attributes",
    "versionId",
];

/// Chooses the operation from method, URL shape and query parameter names.
pub fn select_operation(
    method: &Method,
    target: &Target,
    query: &[(String, String)],
    headers: &HeaderMap,
) -> Operation {
    let has = |name: &str| query.iter().any(|(k, _)| k == name);
    if UNSUPPORTED_SUBRESOURCES.iter().any(|s| has(s)) {
        return Operation::NotSupported;
    }
    let Some(_) = &target.bucket else {
        return if *method == Method::GET {
            Operation::ListBuckets
        } else {
            Operation::NotSupported
        };
    };
    let Some(_) = &target.reference else {
        return match *method {
            Method::GET if has("location") => Operation::GetBucketLocation,
            Method::GET if has("versioning") => Operation::GetBucketVersioning,
            Method::GET if has("uploads") => Operation::ListMultipartUploads,
            Method::GET if has("tagging") => Operation::NotSupported,
            Method::GET if query.iter().any(|(k, v)| k == "list-type" && v == "2") => Operation::ListObjectsV2,
            Method::GET => Operation::ListObjects,
            Method::HEAD => Operation::HeadBucket,
            Method::PUT if query.is_empty() => Operation::CreateBucket,
            Method::POST if has("delete") => Operation::DeleteObjects,
            _ => Operation::NotSupported,
        };
    };
    if target.path.as_deref().unwrap_or("").is_empty() {
        return Operation::EmptyPath;
    }
    let copy_source = headers.contains_key("x-amz-copy-source");
    match *method {
        Method::GET if has("uploadId") => Operation::ListParts,
        Method::GET if has("tagging") => Operation::GetObjectTagging,
        Method::GET => Operation::GetObject,
        Method::HEAD => Operation::HeadObject,
        Method::PUT if has("tagging") => Operation::NotSupported,
        Method::PUT if has("uploadId") && copy_source => Operation::UploadPartCopy,
        Method::PUT if has("uploadId") => Operation::UploadPart,
        Method::PUT if copy_source => Operation::CopyObject,
        Method::PUT => Operation::PutObject,
        Method::POST if has("uploads") => Operation::CreateMultipartUpload,
        Method::POST if has("uploadId") => Operation::CompleteMultipartUpload,
        Method::DELETE if has("uploadId") => Operation::AbortMultipartUpload,
        Method::DELETE if has("tagging") => Operation::NotSupported,
        Method::DELETE => Operation::DeleteObject,
        _ => Operation::NotSupported,
    }
}

/// Decoded query parameters in order of appearance.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub fn query_value<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains() -> Vec<String> {
        vec!["s3.local.lakefs.io".to_string()]
    }

    #[test]
    fn host_matching() {
        assert_eq!(
            match_host(Some("s3.local.lakefs.io:8000"), &domains()),
            HostMatch::Domain
        );
        assert_eq!(
            match_host(Some("repo.s3.local.lakefs.io:8000"), &domains()),
            HostMatch::VirtualHost("repo".into())
        );
        assert_eq!(match_host(Some("a.b.s3.local.lakefs.io"), &domains()), HostMatch::Other);
        assert_eq!(match_host(Some("127.0.0.1:8000"), &domains()), HostMatch::Other);
        assert_eq!(match_host(Some("[::1]:8000"), &domains()), HostMatch::Other);
        assert_eq!(match_host(None, &domains()), HostMatch::Other);
    }

    #[test]
    fn signed_detection() {
        let mut headers = HeaderMap::new();
        assert!(!is_signed(&headers, ""));
        assert!(is_signed(&headers, "X-Amz-Credential=abc&X-Amz-Signature=x"));
        assert!(is_signed(&headers, "AWSAccessKeyId=abc"));
        headers.insert("authorization", "AWS4-HMAC-SHA256 Credential=..".parse().unwrap());
        assert!(is_signed(&headers, ""));
        headers.insert("authorization", "Basic abc".parse().unwrap());
        assert!(!is_signed(&headers, ""));
    }

    #[test]
    fn path_style_targets() {
        let t = parse_target("/repo/main/a/b%20c.csv", None).unwrap();
        assert_eq!(t.bucket.as_deref(), Some("repo"));
        assert_eq!(t.reference.as_deref(), Some("main"));
        assert_eq!(t.path.as_deref(), Some("a/b c.csv"));
        assert_eq!(t.full_key().as_deref(), Some("main/a/b c.csv"));
        let t = parse_target("/repo/main/../../etc/passwd", None).unwrap();
        assert_eq!(t.path.as_deref(), Some("../../etc/passwd"));
        assert_eq!(parse_target("/", None).unwrap().bucket, None);
        let t = parse_target("/repo/", None).unwrap();
        assert_eq!((t.bucket.as_deref(), t.reference), (Some("repo"), None));
        let t = parse_target("/repo/main", None).unwrap();
        assert_eq!((t.reference.as_deref(), t.path), (Some("main"), None));
        assert!(parse_target("/repo/main/%FF", None).is_err());
    }

    #[test]
    fn virtual_host_targets() {
        let t = parse_target("/main/x", Some("repo")).unwrap();
        assert_eq!(t.bucket.as_deref(), Some("repo"));
        assert_eq!(t.reference.as_deref(), Some("main"));
        assert_eq!(t.path.as_deref(), Some("x"));
        let t = parse_target("/", Some("repo")).unwrap();
        assert_eq!((t.bucket.as_deref(), t.reference), (Some("repo"), None));
    }

    proptest::proptest! {
        /// Any path and host parse without panicking; a parsed key always sits under a bucket and a ref.
        #[test]
        fn arbitrary_paths_and_hosts(path in "/\\PC{0,80}", host in "\\PC{0,40}") {
            let _ = match_host(Some(&host), &domains());
            if let Ok(target) = parse_target(&path, None) {
                if target.path.is_some() {
                    proptest::prop_assert!(target.bucket.is_some() && target.reference.is_some());
                }
            }
        }
    }

    #[test]
    fn operation_selection() {
        let h = HeaderMap::new();
        let bucket = parse_target("/repo", None).unwrap();
        let object = parse_target("/repo/main/k", None).unwrap();
        let q = |s: &str| parse_query(s);
        assert_eq!(
            select_operation(&Method::GET, &bucket, &q("list-type=2"), &h),
            Operation::ListObjectsV2
        );
        assert_eq!(
            select_operation(&Method::GET, &bucket, &q("prefix=main/"), &h),
            Operation::ListObjects
        );
        assert_eq!(
            select_operation(&Method::GET, &bucket, &q("location"), &h),
            Operation::GetBucketLocation
        );
        assert_eq!(
            select_operation(&Method::POST, &bucket, &q("delete"), &h),
            Operation::DeleteObjects
        );
        assert_eq!(
            select_operation(&Method::DELETE, &bucket, &q(""), &h),
            Operation::NotSupported
        );
        assert_eq!(
            select_operation(&Method::GET, &bucket, &q("acl"), &h),
            Operation::NotSupported
        );
        assert_eq!(
            select_operation(&Method::POST, &object, &q("uploads"), &h),
            Operation::CreateMultipartUpload
        );
        assert_eq!(
            select_operation(&Method::PUT, &object, &q("partNumber=1&uploadId=x"), &h),
            Operation::UploadPart
        );
        assert_eq!(
            select_operation(&Method::PUT, &object, &q("tagging"), &h),
            Operation::NotSupported
        );
        let mut copy = HeaderMap::new();
        copy.insert("x-amz-copy-source", "repo/main/a".parse().unwrap());
        assert_eq!(
            select_operation(&Method::PUT, &object, &q(""), &copy),
            Operation::CopyObject
        );
        let empty = parse_target("/repo/main/", None).unwrap();
        assert_eq!(select_operation(&Method::GET, &empty, &q(""), &h), Operation::EmptyPath);
    }
}
