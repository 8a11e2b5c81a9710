//! S3 errors: one code enum, one renderer.
//!
//! Every failure in the gateway becomes an [`S3Error`]: a code (which fixes the HTTP status and a default
//! message), an optional specific message and the resource the request named. [`S3Error::into_response`] is the
//! only place that turns one into status + XML body (lakefs-api.md §7.6), so the error shape cannot drift between
//! operations. Store errors are mapped here too, in the two flavours lakeFS uses: on reads a missing ref is
//! indistinguishable from a missing key (`NoSuchKey`), on writes a ref that is not a branch is `NoSuchBucket`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::xml::XmlWriter;
use crate::server::store::StoreError;

/// The S3 error codes this gateway emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum S3ErrorCode {
    AccessDenied,
    AuthorizationHeaderMalformed,
    BadDigest,
    BadRequest,
    BucketAlreadyExists,
    EntityTooLarge,
    IncompleteBody,
    InternalError,
    InvalidArgument,
    InvalidDigest,
    InvalidPart,
    InvalidPartOrder,
    InvalidRange,
    InvalidRequest,
    MalformedXML,
    MetadataTooLarge,
    MissingFields,
    NoSuchBucket,
    NoSuchBucketPossibleApiEndpoint,
    NoSuchKey,
    NoSuchUpload,
    NoSuchVersion,
    NotImplemented,
    NotSupported,
    PreconditionFailed,
    ReadOnlyRepository,
    RequestTimeTooSkewed,
    SignatureDoesNotMatch,
    XAmzContentSha256Mismatch,
}

impl S3ErrorCode {
    pub fn as_str(self) -> &'static str {
        use S3ErrorCode::*;
        match self {
            AccessDenied => "AccessDenied",
            AuthorizationHeaderMalformed => "AuthorizationHeaderMalformed",
            BadDigest => "BadDigest",
            BadRequest => "BadRequest",
            BucketAlreadyExists => "BucketAlreadyExists",
            EntityTooLarge => "EntityTooLarge",
            IncompleteBody => "IncompleteBody",
            InternalError => "InternalError",
            InvalidArgument => "InvalidArgument",
            InvalidDigest => "InvalidDigest",
            InvalidPart => "InvalidPart",
            InvalidPartOrder => "InvalidPartOrder",
            InvalidRange => "InvalidRange",
            InvalidRequest => "InvalidRequest",
            MalformedXML => "MalformedXML",
            MetadataTooLarge => "MetadataTooLarge",
            MissingFields => "MissingFields",
            NoSuchBucket => "NoSuchBucket",
            NoSuchBucketPossibleApiEndpoint => "ErrNoSuchBucketPossibleAPIEndpoint",
            NoSuchKey => "NoSuchKey",
            NoSuchUpload => "NoSuchUpload",
            NoSuchVersion => "NoSuchVersion",
            NotImplemented => "NotImplemented",
            NotSupported => "ERRLakeFSNotSupported",
            PreconditionFailed => "PreconditionFailed",
            ReadOnlyRepository => "ErrReadOnlyRepository",
            RequestTimeTooSkewed => "RequestTimeTooSkewed",
            SignatureDoesNotMatch => "SignatureDoesNotMatch",
            XAmzContentSha256Mismatch => "XAmzContentSHA256Mismatch",
        }
    }

    pub fn status(self) -> StatusCode {
        use S3ErrorCode::*;
        match self {
            AccessDenied | RequestTimeTooSkewed | SignatureDoesNotMatch | ReadOnlyRepository => StatusCode::FORBIDDEN,
            NoSuchBucket | NoSuchBucketPossibleApiEndpoint | NoSuchKey | NoSuchUpload | NoSuchVersion => {
                StatusCode::NOT_FOUND
            }
            BucketAlreadyExists => StatusCode::CONFLICT,
            InvalidRange => StatusCode::RANGE_NOT_SATISFIABLE,
            PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            NotImplemented => StatusCode::NOT_IMPLEMENTED,
            NotSupported => StatusCode::METHOD_NOT_ALLOWED,
            InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            AuthorizationHeaderMalformed
            | BadDigest
            | BadRequest
            | EntityTooLarge
            | IncompleteBody
            | InvalidArgument
            | InvalidDigest
            | InvalidPart
            | InvalidPartOrder
            | InvalidRequest
            | MalformedXML
            | MetadataTooLarge
            | MissingFields
            | XAmzContentSha256Mismatch => StatusCode::BAD_REQUEST,
        }
    }

    fn default_message(self) -> &'static str {
        use S3ErrorCode::*;
        match self {
            AccessDenied => "Access Denied",
            AuthorizationHeaderMalformed => "The authorization header is malformed.",
            BadDigest => "The Content-MD5 you specified did not match what we received.",
            BadRequest => "Bad Request",
            BucketAlreadyExists => "The requested bucket name is not available.",
            EntityTooLarge => "Your proposed upload exceeds the maximum allowed object size.",
            IncompleteBody => "You did not provide the number of bytes specified by the Content-Length HTTP header.",
            InternalError => "We encountered an internal error, please try again.",
            InvalidArgument => "Invalid Argument",
            InvalidDigest => "The Content-MD5 you specified is not valid.",
            InvalidPart => "One or more of the specified parts could not be found.",
            InvalidPartOrder => "The list of parts was not in ascending order.",
            InvalidRange => "The requested range is not satisfiable",
            InvalidRequest => "Invalid Request",
            MalformedXML => {
                "The XML you provided was not well-formed or did not validate against our published schema."
            }
            MetadataTooLarge => "Your metadata headers exceed the maximum allowed metadata size.",
            MissingFields => "Missing fields in request.",
            NoSuchBucket => "The specified bucket does not exist.",
            NoSuchBucketPossibleApiEndpoint => {
                "Repository 'api' not found; the endpoint probably ends in /api/v1, which is the REST API, not S3."
            }
            NoSuchKey => "The specified key does not exist.",
            NoSuchUpload => "The specified multipart upload does not exist.",
            NoSuchVersion => "The specified version does not exist.",
            NotImplemented => "A header you provided implies functionality that is not implemented.",
            NotSupported => "This operation is not supported in LakeFS",
            PreconditionFailed => "At least one of the pre-conditions you specified did not hold",
            ReadOnlyRepository => "repository is read-only",
            RequestTimeTooSkewed => "The difference between the request time and the server's time is too large.",
            SignatureDoesNotMatch => {
                "The request signature we calculated does not match the signature you provided. \
                 Check your key and signing method."
            }
            XAmzContentSha256Mismatch => "The provided 'x-amz-content-sha256' header does not match what was computed.",
        }
    }
}

/// A failed S3 request.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct S3Error {
    pub code: S3ErrorCode,
    pub message: String,
    pub bucket: Option<String>,
    pub key: Option<String>,
}

impl S3Error {
    pub fn new(code: S3ErrorCode) -> Self {
        S3Error {
            code,
            message: code.default_message().to_string(),
            bucket: None,
            key: None,
        }
    }

    pub fn with_message(code: S3ErrorCode, message: impl Into<String>) -> Self {
        S3Error {
            code,
            message: message.into(),
            bucket: None,
            key: None,
        }
    }

    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "s3 gateway internal error");
        Self::new(S3ErrorCode::InternalError)
    }

    /// Maps a store error of a read (GET/HEAD/list/copy source): every kind of "not found" below the repository
    /// level is `NoSuchKey`, as lakeFS does not distinguish a missing ref from a missing key.
    pub fn from_read(err: StoreError) -> Self {
        match err {
            StoreError::BranchNotFound(_)
            | StoreError::TagNotFound
            | StoreError::RefNotFound(_)
            | StoreError::ObjectNotFound
            | StoreError::InvalidRef(_) => Self::new(S3ErrorCode::NoSuchKey),
            other => Self::from_common(other),
        }
    }

    /// Maps a store error of a write: a ref that is not an existing branch is `NoSuchBucket` (lakefs-api.md §7.4).
    pub fn from_write(err: StoreError) -> Self {
        match err {
            StoreError::BranchNotFound(_) | StoreError::TagNotFound | StoreError::RefNotFound(_) => {
                Self::new(S3ErrorCode::NoSuchBucket)
            }
            StoreError::ObjectNotFound => Self::new(S3ErrorCode::NoSuchKey),
            other => Self::from_common(other),
        }
    }

    fn from_common(err: StoreError) -> Self {
        use S3ErrorCode::*;
        match err {
            StoreError::RepositoryNotFound => Self::new(NoSuchBucket),
            StoreError::InvalidArgument(m) | StoreError::InvalidRef(m) => Self::with_message(InvalidArgument, m),
            StoreError::PreconditionFailed(m) => Self::with_message(PreconditionFailed, m),
            StoreError::Forbidden(m) if m.contains("read-only") => Self::with_message(ReadOnlyRepository, m),
            StoreError::Forbidden(m) => Self::with_message(AccessDenied, m),
            StoreError::AlreadyExists(m) | StoreError::NameConflict(m) => Self::with_message(InvalidRequest, m),
            StoreError::BranchNotFound(_) | StoreError::TagNotFound | StoreError::RefNotFound(_) => {
                Self::new(NoSuchKey)
            }
            StoreError::ObjectNotFound => Self::new(NoSuchKey),
            StoreError::NoChanges | StoreError::DirtyBranch | StoreError::MergeConflict { .. } => {
                Self::with_message(InvalidRequest, err.to_string())
            }
            StoreError::Io(_) | StoreError::Internal(_) => Self::internal(err),
        }
    }

    pub fn bucket(mut self, bucket: &str) -> Self {
        self.bucket = Some(bucket.to_string());
        self
    }

    pub fn key(mut self, key: &str) -> Self {
        self.key = Some(key.to_string());
        self
    }

    /// Renders the XML error body of lakefs-api.md §7.6. `resource` is the request path.
    pub fn into_response(self, request_id: &str, resource: &str, region: &str) -> Response {
        let mut xml = XmlWriter::new();
        xml.open("Error");
        xml.element("Code", self.code.as_str());
        xml.element("Message", &self.message);
        if let Some(key) = &self.key {
            xml.element("Key", key);
        }
        if let Some(bucket) = &self.bucket {
            xml.element("BucketName", bucket);
        }
        xml.element("Resource", resource);
        xml.element("Region", region);
        xml.element("RequestId", request_id);
        xml.element("HostId", request_id);
        xml.close("Error");
        let mut response = (self.code.status(), xml.finish()).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
        response
    }
}

pub type S3Result<T> = Result<T, S3Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_and_write_map_missing_refs_differently() {
        assert_eq!(
            S3Error::from_read(StoreError::BranchNotFound("x".into())).code,
            S3ErrorCode::NoSuchKey
        );
        assert_eq!(
            S3Error::from_write(StoreError::BranchNotFound("x".into())).code,
            S3ErrorCode::NoSuchBucket
        );
        assert_eq!(
            S3Error::from_read(StoreError::RepositoryNotFound).code,
            S3ErrorCode::NoSuchBucket
        );
        assert_eq!(
            S3Error::from_write(StoreError::PreconditionFailed("path already exists".into()))
                .code
                .status(),
            StatusCode::PRECONDITION_FAILED
        );
    }

    #[test]
    fn renders_xml_error() {
        let response = S3Error::new(S3ErrorCode::NoSuchKey)
            .bucket("repo")
            .key("main/a")
            .into_response("req1", "/repo/main/a", "us-east-1");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/xml");
    }
}
