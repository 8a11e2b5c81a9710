//! ListObjects v1 and v2 (lakefs-api.md §7.3).
//!
//! The S3 key space of a bucket is `ref/path`, so the `prefix` carries the ref: `prefix=main/data/` lists `data/`
//! on `main`, and every returned key and common prefix starts with `main/`. A prefix without `/` (also the empty
//! one) cannot name a ref yet, so the gateway lists *branches* whose names start with it, each as a common
//! prefix `<branch>/` - this is what lets `aws s3 ls s3://repo/` show branches like directories.
//!
//! Paging markers (v1 `marker`, v2 `continuation-token` / `start-after`) are full keys including the ref; the
//! ref part must match the prefix's ref. The store pages strictly after a path, and a common prefix is a valid
//! position, so the last returned entry is always the next marker.

use axum::response::Response;

use super::error::{S3Error, S3ErrorCode, S3Result};
use super::xml::{format_timestamp, XmlWriter};
use super::{etag, xml_response, Ctx};
use crate::server::store::{ListEntry, PageRequest, StoreError, MAX_PAGE};

/// One page of results; S3 keys are `ref_prefix` + the store path.
struct Listing {
    entries: Vec<ListEntry>,
    /// `<ref>/` for object listings, empty for the branch listing.
    ref_prefix: String,
    has_more: bool,
}

impl Listing {
    fn empty() -> Self {
        Listing {
            entries: Vec::new(),
            ref_prefix: String::new(),
            has_more: false,
        }
    }

    fn last_key(&self) -> Option<String> {
        self.entries.last().map(|e| format!("{}{}", self.ref_prefix, e.path()))
    }
}

pub async fn list_objects(ctx: &Ctx, v2: bool) -> S3Result<Response> {
    let repo = ctx.bucket().to_string();
    let prefix = ctx.query("prefix").unwrap_or_default().to_string();
    let delimiter = ctx.query("delimiter").filter(|d| !d.is_empty()).map(str::to_string);
    let max_keys = match ctx.query("max-keys") {
        None | Some("") => MAX_PAGE,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| S3Error::with_message(S3ErrorCode::InvalidArgument, "invalid max-keys"))?
            .min(MAX_PAGE as i64) as usize,
    };
    let continuation_token = if v2 {
        ctx.query("continuation-token").filter(|t| !t.is_empty())
    } else {
        None
    };
    let start_after = if v2 {
        ctx.query("start-after")
    } else {
        ctx.query("marker")
    }
    .unwrap_or_default();
    // The effective exclusive start key: the greater of the continuation token and start-after.
    let marker = match continuation_token {
        Some(token) if token > start_after => token,
        _ => start_after,
    }
    .to_string();

    // Check the repository first, so a missing one is NoSuchBucket whatever the prefix.
    {
        let repo = repo.clone();
        ctx.blocking(move |s| s.get_repository(&repo))
            .await
            .map_err(|e| S3Error::from_read(e).bucket(ctx.bucket()))?;
    }

    let listing = if max_keys == 0 {
        Listing::empty()
    } else if let Some((reference, path_prefix)) = prefix.split_once('/') {
        let reference = reference.to_string();
        let ref_prefix = format!("{reference}/");
        let after = if marker.is_empty() || marker.as_str() < ref_prefix.as_str() {
            String::new()
        } else if let Some(rest) = marker.strip_prefix(&ref_prefix) {
            rest.to_string()
        } else if continuation_token.is_some() {
            return Err(S3Error::with_message(
                S3ErrorCode::BadRequest,
                "continuation token is for another ref",
            ));
        } else {
            // A start-after beyond this ref's keys: nothing left.
            return Ok(render(
                ctx,
                v2,
                &prefix,
                delimiter.as_deref(),
                max_keys,
                &marker,
                Listing::empty(),
            ));
        };
        let page = PageRequest {
            prefix: path_prefix.to_string(),
            after,
            amount: max_keys,
        };
        let result = {
            let (repo, reference, delimiter) = (repo.clone(), reference.clone(), delimiter.clone());
            ctx.blocking(move |s| s.list_objects(&repo, &reference, &page, delimiter.as_deref()))
                .await
        };
        match result {
            Ok(page) => Listing {
                entries: page.items,
                ref_prefix,
                has_more: page.has_more,
            },
            Err(StoreError::RepositoryNotFound) => return Err(S3Error::new(S3ErrorCode::NoSuchBucket).bucket(&repo)),
            Err(
                StoreError::BranchNotFound(_)
                | StoreError::RefNotFound(_)
                | StoreError::TagNotFound
                | StoreError::InvalidRef(_),
            ) => {
                if v2 {
                    return Err(S3Error::with_message(
                        S3ErrorCode::BadRequest,
                        format!("ref {reference} not found"),
                    ));
                }
                Listing::empty()
            }
            Err(e) => return Err(S3Error::from_read(e)),
        }
    } else {
        // No '/' in the prefix: branches as common prefixes.
        let after = marker.strip_suffix('/').unwrap_or(&marker).to_string();
        let page = PageRequest {
            prefix: prefix.clone(),
            after,
            amount: max_keys,
        };
        let repo_for_call = repo.clone();
        let branches = ctx
            .blocking(move |s| s.list_branches(&repo_for_call, &page, false))
            .await
            .map_err(|e| S3Error::from_read(e).bucket(&repo))?;
        Listing {
            entries: branches
                .items
                .into_iter()
                .map(|b| ListEntry::CommonPrefix(format!("{}/", b.id)))
                .collect(),
            ref_prefix: String::new(),
            has_more: branches.has_more,
        }
    };
    Ok(render(
        ctx,
        v2,
        &prefix,
        delimiter.as_deref(),
        max_keys,
        &marker,
        listing,
    ))
}

fn render(
    ctx: &Ctx,
    v2: bool,
    prefix: &str,
    delimiter: Option<&str>,
    max_keys: usize,
    marker: &str,
    listing: Listing,
) -> Response {
    let mut xml = XmlWriter::new();
    xml.root("ListBucketResult");
    xml.element("Name", ctx.bucket());
    xml.element("Prefix", prefix);
    if v2 {
        if let Some(start_after) = ctx.query("start-after") {
            xml.element("StartAfter", start_after);
        }
        if let Some(token) = ctx.query("continuation-token") {
            xml.element("ContinuationToken", token);
        }
    } else {
        xml.element("Marker", marker);
    }
    if listing.has_more {
        if let Some(next) = listing.last_key() {
            if v2 {
                xml.element("NextContinuationToken", &next);
            } else if delimiter.is_some() {
                xml.element("NextMarker", &next);
            }
        }
    }
    if v2 {
        xml.element("KeyCount", &listing.entries.len().to_string());
    }
    xml.element("MaxKeys", &max_keys.to_string());
    if let Some(delimiter) = delimiter {
        xml.element("Delimiter", delimiter);
    }
    xml.element("IsTruncated", if listing.has_more { "true" } else { "false" });
    for entry in &listing.entries {
        if let ListEntry::Object { path, entry } = entry {
            xml.open("Contents");
            xml.element("Key", &format!("{}{}", listing.ref_prefix, path));
            xml.element("LastModified", &format_timestamp(entry.mtime));
            xml.element("ETag", &etag(&entry.checksum));
            xml.element("Size", &entry.size.to_string());
            xml.element("StorageClass", "STANDARD");
            xml.close("Contents");
        }
    }
    for entry in &listing.entries {
        if let ListEntry::CommonPrefix(p) = entry {
            xml.open("CommonPrefixes");
            xml.element("Prefix", &format!("{}{}", listing.ref_prefix, p));
            xml.close("CommonPrefixes");
        }
    }
    xml.close("ListBucketResult");
    xml_response(xml.finish())
}
