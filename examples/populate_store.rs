//! Bulk-loads many small objects straight into a server data directory (for benchmarks): far faster than one
//! upload per object, and what is stored is exactly what uploads would have stored.
//!
//! usage: populate_store DATA_DIR REPO PREFIX COUNT DIRS
//!   creates REPO (default branch main) when missing, then COUNT objects of 4 KiB spread over DIRS directories:
//!   PREFIX/dNNNN/fNNNNNNN.bin (DIRS = 1: PREFIX/fNNNNNNN.bin), and commits them on main.
//! Run it while no server uses DATA_DIR.

use std::collections::BTreeMap;

use lakefs_fuse::server::store::{CommitRequest, ObjectEntry, Store, StoreError};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() == 6, "usage: populate_store DATA_DIR REPO PREFIX COUNT DIRS");
    let (data_dir, repo, prefix) = (&args[1], &args[2], &args[3]);
    let count: usize = args[4].parse()?;
    let dirs: usize = args[5].parse()?;
    let store = Store::open(std::path::Path::new(data_dir))?;
    match store.create_repository(repo, &format!("local://{repo}"), "main") {
        Ok(_) | Err(StoreError::AlreadyExists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let body: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    let blob = store
        .write_blob(futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(body))]))
        .await?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    let entry = ObjectEntry {
        blob: blob.id.clone(),
        checksum: blob.md5.clone(),
        size: blob.size,
        mtime: now,
        content_type: "application/octet-stream".into(),
        metadata: BTreeMap::new(),
    };
    let paths: Vec<String> = (0..count)
        .map(|i| if dirs <= 1 { format!("{prefix}/f{i:07}.bin") } else { format!("{prefix}/d{:04}/f{i:07}.bin", i % dirs) })
        .collect();
    for chunk in paths.chunks(10_000) {
        let batch: Vec<(String, ObjectEntry)> = chunk.iter().map(|p| (p.clone(), entry.clone())).collect();
        store.put_objects(repo, "main", &batch)?;
    }
    let commit = store.commit(
        repo,
        "main",
        CommitRequest { message: format!("load {count} objects under {prefix}/"), ..Default::default() },
    )?;
    println!("{} objects under {prefix}/ committed as {}", count, commit.id);
    Ok(())
}
