//! Measures S3 PUT and GET throughput of one object with aws-sdk-s3: the "plain ranged-GET client" that the
//! benchmarks compare the gateway and the mount against.
//!
//! usage: s3_throughput ENDPOINT BUCKET KEY FILE STREAMS put|get
//!   put: uploads FILE (1 stream: one PutObject streamed from the file; N streams: multipart, N parts in flight)
//!   get: downloads KEY to nowhere (1 stream: one GetObject; N streams: ranged GETs of 8 MiB, N in flight)
//! Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; PART_BYTES overrides the 8 MiB part and range
//! size. Prints one JSON line with MiB/s.

use std::sync::Arc;
use std::time::Instant;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use tokio::sync::Semaphore;

const DEFAULT_PART: u64 = 8 << 20;

fn part_size() -> u64 {
    std::env::var("PART_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_PART)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() == 7,
        "usage: s3_throughput ENDPOINT BUCKET KEY FILE STREAMS put|get"
    );
    let (endpoint, bucket, key, file) = (&args[1], &args[2], &args[3], &args[4]);
    let streams: usize = args[5].parse()?;
    let creds = aws_sdk_s3::config::Credentials::new(
        std::env::var("AWS_ACCESS_KEY_ID")?,
        std::env::var("AWS_SECRET_ACCESS_KEY")?,
        None,
        None,
        "env",
    );
    let config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .endpoint_url(endpoint)
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .force_path_style(true)
        // Plain signed payloads: the same request shape for every server compared (some reject the SDK's
        // default trailing-checksum uploads).
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
        .build();
    let client = aws_sdk_s3::Client::from_conf(config);
    let started = Instant::now();
    let bytes = match args[6].as_str() {
        "put" if streams <= 1 => {
            let body = ByteStream::from_path(file).await?;
            let len = std::fs::metadata(file)?.len();
            client.put_object().bucket(bucket).key(key).body(body).send().await?;
            len
        }
        "put" => put_multipart(&client, bucket, key, file, streams).await?,
        "get" if streams <= 1 => {
            let mut body = client.get_object().bucket(bucket).key(key).send().await?.body;
            let mut n = 0u64;
            while let Some(chunk) = body.try_next().await? {
                n += chunk.len() as u64;
            }
            n
        }
        "get" => get_ranged(&client, bucket, key, streams).await?,
        other => anyhow::bail!("unknown mode {other}"),
    };
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{{\"mode\":\"{}\",\"streams\":{},\"bytes\":{},\"seconds\":{:.3},\"mib_per_s\":{:.1}}}",
        args[6],
        streams,
        bytes,
        secs,
        bytes as f64 / secs / (1 << 20) as f64
    );
    Ok(())
}

async fn put_multipart(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    file: &str,
    streams: usize,
) -> anyhow::Result<u64> {
    let len = std::fs::metadata(file)?.len();
    let upload = client.create_multipart_upload().bucket(bucket).key(key).send().await?;
    let upload_id = upload.upload_id().unwrap_or_default().to_string();
    let limit = Arc::new(Semaphore::new(streams));
    let mut tasks = Vec::new();
    let part = part_size();
    for (i, offset) in (0..len).step_by(part as usize).enumerate() {
        let permit = limit.clone().acquire_owned().await?;
        let (client, bucket, key, upload_id) = (client.clone(), bucket.to_string(), key.to_string(), upload_id.clone());
        let body = ByteStream::read_from()
            .path(file)
            .offset(offset)
            .length(aws_sdk_s3::primitives::Length::UpTo(part))
            .build()
            .await?;
        tasks.push(tokio::spawn(async move {
            let part_number = i as i32 + 1;
            let out = client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(part_number)
                .body(body)
                .send()
                .await;
            drop(permit);
            out.map(|o| {
                CompletedPart::builder()
                    .part_number(part_number)
                    .set_e_tag(o.e_tag)
                    .build()
            })
        }));
    }
    let mut parts = Vec::new();
    for t in tasks {
        parts.push(t.await??);
    }
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
        .send()
        .await?;
    Ok(len)
}

async fn get_ranged(client: &aws_sdk_s3::Client, bucket: &str, key: &str, streams: usize) -> anyhow::Result<u64> {
    let len = client
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await?
        .content_length()
        .unwrap_or(0) as u64;
    let limit = Arc::new(Semaphore::new(streams));
    let mut tasks = Vec::new();
    let part = part_size();
    for offset in (0..len).step_by(part as usize) {
        let permit = limit.clone().acquire_owned().await?;
        let (client, bucket, key) = (client.clone(), bucket.to_string(), key.to_string());
        let end = (offset + part).min(len) - 1;
        tasks.push(tokio::spawn(async move {
            let out = client
                .get_object()
                .bucket(bucket)
                .key(key)
                .range(format!("bytes={offset}-{end}"))
                .send()
                .await;
            let mut n = 0u64;
            if let Ok(o) = out {
                let mut body = o.body;
                while let Ok(Some(chunk)) = body.try_next().await {
                    n += chunk.len() as u64;
                }
            }
            drop(permit);
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await?;
    }
    anyhow::ensure!(total == len, "short read: {total} of {len} bytes");
    Ok(total)
}
