//! Bucket-level operations: ListBuckets, HeadBucket, CreateBucket, GetBucketLocation, GetBucketVersioning.
//!
//! Buckets are repositories, which are created through the REST API only: CreateBucket answers 409
//! `BucketAlreadyExists` for an existing repository and 501 otherwise (lakefs-api.md §7.2).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::error::{S3Error, S3ErrorCode, S3Result};
use super::xml::{format_timestamp, XmlWriter};
use super::{xml_response, Ctx};
use crate::server::store::{PageRequest, Repository, MAX_PAGE};

pub async fn list_buckets(ctx: &Ctx) -> S3Result<Response> {
    let prefix = ctx.query("prefix").unwrap_or_default().to_string();
    let repositories = ctx
        .blocking(move |store| {
            let mut all: Vec<Repository> = Vec::new();
            loop {
                let after = all.last().map(|r| r.id.clone()).unwrap_or_default();
                let page = store.list_repositories(&PageRequest {
                    prefix: prefix.clone(),
                    after,
                    amount: MAX_PAGE,
                })?;
                all.extend(page.items);
                if !page.has_more {
                    return Ok(all);
                }
            }
        })
        .await
        .map_err(S3Error::from_read)?;
    let mut xml = XmlWriter::new();
    xml.root("ListAllMyBucketsResult");
    xml.open("Owner");
    xml.element("ID", "");
    xml.element("DisplayName", "");
    xml.close("Owner");
    xml.open("Buckets");
    for repository in &repositories {
        xml.open("Bucket");
        xml.element("Name", &repository.id);
        xml.element("CreationDate", &format_timestamp(repository.creation_date));
        xml.close("Bucket");
    }
    xml.close("Buckets");
    xml.close("ListAllMyBucketsResult");
    Ok(xml_response(xml.finish()))
}

async fn repository(ctx: &Ctx) -> S3Result<Repository> {
    let repo = ctx.bucket().to_string();
    ctx.blocking(move |store| store.get_repository(&repo))
        .await
        .map_err(|e| S3Error::from_read(e).bucket(ctx.bucket()))
}

pub async fn head_bucket(ctx: &Ctx) -> S3Result<Response> {
    repository(ctx).await?;
    Ok(StatusCode::OK.into_response())
}

pub async fn create_bucket(ctx: &Ctx) -> S3Result<Response> {
    match repository(ctx).await {
        Ok(_) => Err(S3Error::new(S3ErrorCode::BucketAlreadyExists).bucket(ctx.bucket())),
        Err(e) if e.code == S3ErrorCode::NoSuchBucket => Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "buckets are lakeFS repositories; create them through the lakeFS API",
        )),
        Err(e) => Err(e),
    }
}

pub async fn location(ctx: &Ctx) -> S3Result<Response> {
    repository(ctx).await?;
    let region = &ctx.state.config.region;
    let mut xml = XmlWriter::new();
    xml.root("LocationConstraint");
    if region != "us-east-1" {
        xml.text(region);
    }
    xml.close("LocationConstraint");
    Ok(xml_response(xml.finish()))
}

pub async fn versioning(ctx: &Ctx) -> S3Result<Response> {
    repository(ctx).await?;
    let mut xml = XmlWriter::new();
    xml.root("VersioningConfiguration");
    xml.close("VersioningConfiguration");
    Ok(xml_response(xml.finish()))
}
