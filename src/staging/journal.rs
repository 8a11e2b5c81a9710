//! The staging journal: which local files may hold bytes the staging branch lacks, so that a mount restarted
//! after a crash uploads them.
//!
//! It is an append-only log of JSON lines, one record per change (`pending` names a file with what it is,
//! `done` forgets it), written with one `write(2)` each. Creating many small files journals every one of them
//! twice; a log keeps that O(1) per file where rewriting a whole journal would be O(files waiting for upload),
//! which with uploads in the background is all of them.
//!
//! - Replay keeps the last record per file. A line cut short by a crash (only the last one can be) is ignored:
//!   its record was never acknowledged, because the caller learns of success only after the write returned.
//! - The log is compacted (rewritten temp-then-rename with the live entries) when it opens and whenever it has
//!   grown to several times the live set, so its size stays proportional to the files actually waiting.
//! - Not fsynced: the journal guards against the mount process dying (kill -9, a crash), after which the page
//!   cache still holds it. What must survive the machine going down is what `fsync` or a commit returned 0 for,
//!   and that is on the staging branch already (the server made it durable). An fsync here would cost two disk
//!   flushes per file written, the bulk of creating many small files.
//! - `journal.json`, the whole-map format of earlier versions, is read once and folded into the log.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{private_file_options, PendingUpload};

pub(super) const JOURNAL_LOG: &str = "journal.log";
const LEGACY_JOURNAL: &str = "journal.json";
/// Compact once the log holds this many records more than live entries, and more than 4x the live entries.
const COMPACT_SLACK: usize = 4096;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Record {
    Pending { name: String, upload: PendingUpload },
    Done { name: String },
}

/// The journal of one staging directory.
#[derive(Debug)]
pub(super) struct Journal {
    dir: PathBuf,
    log: File,
    /// Entries by staged file name, as the log says.
    live: BTreeMap<String, PendingUpload>,
    /// Records in the log file.
    records: usize,
}

impl Journal {
    /// Whether `dir` holds a journal, i.e. an earlier run may have left files to upload.
    pub fn exists(dir: &Path) -> bool {
        dir.join(JOURNAL_LOG).exists() || dir.join(LEGACY_JOURNAL).exists()
    }

    /// Replay the journal in `dir` (if any) and start a compacted log. Returns it with the entries it holds.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let mut live = read_legacy(&dir.join(LEGACY_JOURNAL))?;
        let log_path = dir.join(JOURNAL_LOG);
        match std::fs::read(&log_path) {
            Ok(bytes) => replay(&bytes, &log_path, &mut live),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let log = write_compacted(dir, &live)?;
        match std::fs::remove_file(dir.join(LEGACY_JOURNAL)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            log,
            records: live.len(),
            live,
        })
    }

    pub fn entries(&self) -> &BTreeMap<String, PendingUpload> {
        &self.live
    }

    /// Keep only the entries `keep` accepts (files of an earlier run that are gone).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) -> io::Result<()> {
        let before = self.live.len();
        self.live.retain(|name, _| keep(name));
        if self.live.len() != before {
            self.compact()?;
        }
        Ok(())
    }

    /// Journal `name` as `upload` (a no-op when it already is).
    pub fn pending(&mut self, name: &str, upload: PendingUpload) -> io::Result<()> {
        if self.live.get(name) == Some(&upload) {
            return Ok(());
        }
        self.append(&Record::Pending {
            name: name.to_string(),
            upload: upload.clone(),
        })?;
        self.live.insert(name.to_string(), upload);
        Ok(())
    }

    /// Forget `name` (a no-op when it is not journalled).
    pub fn done(&mut self, name: &str) -> io::Result<()> {
        if !self.live.contains_key(name) {
            return Ok(());
        }
        self.append(&Record::Done { name: name.to_string() })?;
        self.live.remove(name);
        if self.records > COMPACT_SLACK + self.live.len() && self.records > 4 * self.live.len() {
            self.compact()?;
        }
        Ok(())
    }

    fn append(&mut self, record: &Record) -> io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        self.log.write_all(&line)?;
        self.records += 1;
        Ok(())
    }

    fn compact(&mut self) -> io::Result<()> {
        self.log = write_compacted(&self.dir, &self.live)?;
        self.records = self.live.len();
        Ok(())
    }
}

fn read_legacy(path: &Path) -> io::Result<BTreeMap<String, PendingUpload>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "unreadable staging journal ignored");
            BTreeMap::new()
        })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e),
    }
}

fn replay(bytes: &[u8], path: &Path, live: &mut BTreeMap<String, PendingUpload>) {
    let complete = bytes.ends_with(b"\n");
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    let last = lines.len().saturating_sub(1);
    for (index, line) in lines.iter().enumerate() {
        match serde_json::from_slice::<Record>(line) {
            Ok(Record::Pending { name, upload }) => {
                live.insert(name, upload);
            }
            Ok(Record::Done { name }) => {
                live.remove(&name);
            }
            // The write a crash cut short: never acknowledged, so nothing depends on it.
            Err(_) if index == last && !complete => {}
            Err(e) => tracing::warn!(path = %path.display(), line = index + 1, error = %e, "journal record ignored"),
        }
    }
}

/// Write `live` as a fresh log (temp file, rename) and return it open for appending.
fn write_compacted(dir: &Path, live: &BTreeMap<String, PendingUpload>) -> io::Result<File> {
    let path = dir.join(JOURNAL_LOG);
    let temp = dir.join(format!("{JOURNAL_LOG}.tmp"));
    let mut bytes = Vec::new();
    for (name, upload) in live {
        let record = Record::Pending {
            name: name.clone(),
            upload: upload.clone(),
        };
        serde_json::to_writer(&mut bytes, &record).map_err(io::Error::other)?;
        bytes.push(b'\n');
    }
    let mut file = private_file_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)?;
    file.write_all(&bytes)?;
    drop(file);
    std::fs::rename(&temp, &path)?;
    private_file_options().append(true).open(&path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::staging::tests::pending as upload;

    #[test]
    fn replay_keeps_the_last_record_per_file() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let mut journal = Journal::open(tmp.path()).unwrap();
            journal.pending("1.data", upload("a")).unwrap();
            journal.pending("2.data", upload("b")).unwrap();
            journal.pending("1.data", upload("renamed")).unwrap();
            journal.done("2.data").unwrap();
            journal.pending("3.data", upload("c")).unwrap();
        }
        let journal = Journal::open(tmp.path()).unwrap();
        let keys: Vec<(&str, &str)> = journal
            .entries()
            .iter()
            .map(|(n, u)| (n.as_str(), u.key.as_str()))
            .collect();
        assert_eq!(keys, [("1.data", "renamed"), ("3.data", "c")]);
        let log = std::fs::read_to_string(tmp.path().join(JOURNAL_LOG)).unwrap();
        assert_eq!(log.lines().count(), 2, "opening compacts the log: {log}");
    }

    #[test]
    fn a_torn_last_record_is_ignored_and_others_survive() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let mut journal = Journal::open(tmp.path()).unwrap();
            journal.pending("1.data", upload("a")).unwrap();
        }
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(tmp.path().join(JOURNAL_LOG))
            .unwrap();
        log.write_all(br#"{"pending":{"name":"2.data","upl"#).unwrap();
        let journal = Journal::open(tmp.path()).unwrap();
        assert_eq!(journal.entries().keys().collect::<Vec<_>>(), ["1.data"]);
    }

    #[test]
    fn the_log_is_compacted_as_it_grows() {
        let tmp = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(tmp.path()).unwrap();
        journal.pending("keep.data", upload("keep")).unwrap();
        for i in 0..3 * COMPACT_SLACK {
            let name = format!("{i}.data");
            journal.pending(&name, upload("x")).unwrap();
            journal.done(&name).unwrap();
        }
        let lines = std::fs::read_to_string(tmp.path().join(JOURNAL_LOG))
            .unwrap()
            .lines()
            .count();
        assert!(lines <= COMPACT_SLACK + 2, "{lines} records for one live entry");
        drop(journal);
        let journal = Journal::open(tmp.path()).unwrap();
        assert_eq!(journal.entries().keys().collect::<Vec<_>>(), ["keep.data"]);
    }

    #[test]
    fn the_whole_map_journal_of_earlier_versions_is_taken_over() {
        let tmp = tempfile::tempdir().unwrap();
        let legacy: BTreeMap<String, PendingUpload> = [("5.data".to_string(), upload("old"))].into();
        std::fs::write(tmp.path().join(LEGACY_JOURNAL), serde_json::to_vec(&legacy).unwrap()).unwrap();
        assert!(Journal::exists(tmp.path()));
        let journal = Journal::open(tmp.path()).unwrap();
        assert_eq!(journal.entries(), &legacy);
        assert!(!tmp.path().join(LEGACY_JOURNAL).exists());
        assert!(Journal::exists(tmp.path()));
    }
}
