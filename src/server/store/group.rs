//! Group commit of staged writes: concurrent PUTs share one metadata transaction, and so one disk flush.
//!
//! Every acknowledged write must survive a crash, so each redb transaction flushes to disk, and those flushes
//! serialise: one PUT at a time would cap the server at a few hundred small objects per second however many
//! clients write. Instead a PUT enqueues its write and takes the leader lock; the leader that gets it first
//! stages everything queued so far in one transaction and answers every waiter before it lets go. A waiter
//! that gets the lock and finds its answer already there returns it, so no condition variable is needed: a
//! request is queued before its thread asks for the lock, and every leader drains the whole queue.

use std::sync::{Arc, Mutex};

use super::StoreError;

/// One staged write waiting for a transaction.
#[derive(Debug)]
pub(super) struct StagedPut {
    pub repo: String,
    pub branch: String,
    pub path: String,
    /// The entry as stored.
    pub value: Vec<u8>,
    pub if_none_match: bool,
}

type Answer = Arc<Mutex<Option<Result<(), StoreError>>>>;

#[derive(Debug, Default)]
pub(super) struct GroupCommit {
    queue: Mutex<Vec<(StagedPut, Answer)>>,
    leader: Mutex<()>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl GroupCommit {
    /// Queue `put` and wait for its answer; `stage` runs one transaction over a batch (returning one result per
    /// put, in order) on whichever thread leads.
    pub fn submit(
        &self,
        put: StagedPut,
        stage: impl FnOnce(&[StagedPut]) -> Vec<Result<(), StoreError>>,
    ) -> Result<(), StoreError> {
        let answer: Answer = Arc::default();
        lock(&self.queue).push((put, answer.clone()));
        let _leader = lock(&self.leader);
        let answered = lock(&answer).take();
        if let Some(result) = answered {
            return result;
        }
        let batch = std::mem::take(&mut *lock(&self.queue));
        let (puts, answers): (Vec<StagedPut>, Vec<Answer>) = batch.into_iter().unzip();
        let mut results = stage(&puts);
        results.resize_with(puts.len(), || {
            Err(StoreError::Internal("staged write left unanswered".to_string()))
        });
        for (waiting, result) in answers.iter().zip(results) {
            *lock(waiting) = Some(result);
        }
        let mine = lock(&answer).take();
        mine.unwrap_or_else(|| Err(StoreError::Internal("staged write left unanswered".to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn put(path: &str) -> StagedPut {
        StagedPut {
            repo: "r".into(),
            branch: "main".into(),
            path: path.into(),
            value: Vec::new(),
            if_none_match: false,
        }
    }

    #[test]
    fn concurrent_puts_share_transactions_and_each_gets_its_own_answer() {
        let group = Arc::new(GroupCommit::default());
        let transactions = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..32)
            .map(|i| {
                let (group, transactions) = (group.clone(), transactions.clone());
                std::thread::spawn(move || {
                    group.submit(put(&format!("p{i}")), |batch| {
                        transactions.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        batch
                            .iter()
                            .map(|p| match p.path.as_str() {
                                "p7" => Err(StoreError::PreconditionFailed("path already exists".into())),
                                _ => Ok(()),
                            })
                            .collect()
                    })
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        for (i, result) in results.iter().enumerate() {
            assert_eq!(result.is_ok(), i != 7, "put {i}: {result:?}");
        }
        let transactions = transactions.load(Ordering::SeqCst);
        assert!(transactions < 32, "{transactions} transactions for 32 concurrent puts");
    }
}
