//! The local store: `<state-dir>/profiles.json`, shared by the API (writer) and the webhook
//! (reader). Writes are atomic and durable (temporary file, fsync, rename, fsync of the directory),
//! so a profile acknowledged to a client survives `kill -9` and a reader never sees half a file.
//! A broken file (hand edit, bad ConfigMap) never replaces the last good snapshot.

use super::{BoxFuture, Change, ProfileStore, Publisher, Step, UpdateError, Updated, check_change};
use crate::decision::SharedSnapshot;
use crate::files::write_atomic;
use crate::metrics::Metrics;
use crate::profile::{self, FargateProfile, Limits, ProfileState, Selector};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const PROFILES_FILE: &str = "profiles.json";

pub struct FileStore {
    path: PathBuf,
    limits: Limits,
    /// Serialises writers and reloads, so a reload never overtakes a write in flight.
    write_lock: Mutex<()>,
    published: Publisher,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("path", &self.path)
            .finish()
    }
}

/// The profile a fresh state directory starts with, so `serve` does something visible at once.
pub fn example_profiles() -> ProfileState {
    ProfileState {
        fargate_profiles: vec![FargateProfile {
            fargate_profile_name: "example".into(),
            pod_execution_role_arn: "arn:aws:iam::012345678910:role/AmazonEKSPodExecutionRole"
                .into(),
            subnets: vec![
                "subnet-0420a37ee456daf3f".into(),
                "subnet-09a8afb8db4f02d21".into(),
            ],
            selectors: vec![Selector {
                namespace: Some("fargate-example".into()),
                labels: BTreeMap::new(),
            }],
            ..Default::default()
        }],
        client_request_tokens: BTreeMap::new(),
    }
}

impl FileStore {
    /// Open (and on first use create) the state directory. A missing file gets the example profile;
    /// an unreadable one leaves the store empty and not ready until the file is fixed.
    pub fn open(
        state_dir: &Path,
        limits: Limits,
        snapshot: SharedSnapshot,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(state_dir)?;
        let path = state_dir.join(PROFILES_FILE);
        {
            // Temporary files of writers killed mid-write: under the writers' lock none is live.
            let lock = open_lock(&path)?;
            let removed = crate::files::remove_stale_temporaries(&path);
            drop(lock);
            if removed > 0 {
                tracing::info!(removed, dir = %state_dir.display(), "removed temporary files left by interrupted writes");
            }
        }
        if !path.exists() {
            write_atomic(&path, &encode(&example_profiles()))?;
            tracing::info!(path = %path.display(), "created a profiles file with an example profile");
        }
        let store = Arc::new(FileStore {
            path,
            limits,
            write_lock: Mutex::new(()),
            published: Publisher::new(snapshot, metrics),
        });
        store.reload();
        Ok(store)
    }

    /// Re-read the file; publish it if it is valid and different, keep the last good one otherwise.
    pub fn reload(&self) -> bool {
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let result = std::fs::read(&self.path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                profile::parse_profiles_file(&bytes, &self.limits).map_err(|e| e.to_string())
            });
        match result {
            Ok(state) => {
                if self.is_loaded() && *self.published.current() == state {
                    return true; // our own write, or a touch: nothing new
                }
                self.published.publish(Arc::new(state));
                self.published.mark_loaded();
                self.published.metrics().reload("profiles", true);
                tracing::info!(path = %self.path.display(), "profiles reloaded");
                true
            }
            Err(error) => {
                self.published.metrics().reload("profiles", false);
                tracing::error!(path = %self.path.display(), %error, "profiles file rejected; keeping the last good snapshot");
                false
            }
        }
    }

    /// Watch the state directory and reload on change.
    pub fn watch(self: &Arc<Self>) -> notify::Result<tokio::task::JoinHandle<()>> {
        let store = Arc::clone(self);
        crate::files::watch_dirs(vec![crate::files::parent_dir(&self.path)], move || {
            store.reload();
        })
    }

    fn update_blocking(&self, mut change: Change<'_>) -> Result<Updated, UpdateError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        if !self.is_loaded() {
            return Err(UpdateError::NotLoaded(format!(
                "{} is not a valid profiles file; fix it first",
                self.path.display()
            )));
        }
        // Writers in other processes sharing the directory serialise on this lock file.
        let lock = open_lock(&self.path).map_err(|e| {
            UpdateError::storage(format!("locking {}", lock_path(&self.path).display()), e)
        })?;
        // Start from the file as it is now, not from memory: a hand edit (or another process's
        // write) that the watcher has not reloaded yet must not be overwritten.
        let mut next = match std::fs::read(&self.path) {
            Ok(bytes) => profile::parse_profiles_file(&bytes, &self.limits).map_err(|e| {
                UpdateError::NotLoaded(format!(
                    "{} is invalid ({e}); fix it first",
                    self.path.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                (*self.published.current()).clone()
            }
            Err(e) => {
                return Err(UpdateError::storage(
                    format!("reading {}", self.path.display()),
                    e,
                ));
            }
        };
        let before = next.clone();
        if change(&mut next) == Step::Abort {
            return Ok(Updated::Aborted);
        }
        check_change(&before, &next, &self.limits)?;
        write_atomic(&self.path, &encode(&next))
            .map_err(|e| UpdateError::storage(format!("writing {}", self.path.display()), e))?;
        drop(lock);
        let next = Arc::new(next);
        self.published.publish(Arc::clone(&next));
        self.published.mark_loaded();
        Ok(Updated::Committed(next))
    }
}

impl ProfileStore for FileStore {
    fn current(&self) -> Arc<ProfileState> {
        self.published.current()
    }

    fn update<'a>(&'a self, change: Change<'a>) -> BoxFuture<'a, Result<Updated, UpdateError>> {
        // The write is a few small syscalls plus two fsyncs; block_in_place keeps the borrowed
        // closure usable without forcing 'static on every caller.
        Box::pin(async move { tokio::task::block_in_place(|| self.update_blocking(change)) })
    }

    fn is_loaded(&self) -> bool {
        self.published.is_loaded()
    }

    fn wait_loaded(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.published.wait_loaded())
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.published.subscribe()
    }
}

/// The lock file every writer of `path` (in any process sharing the directory) holds exclusively.
fn lock_path(path: &Path) -> PathBuf {
    crate::files::parent_dir(path).join(".profiles.json.lock")
}

/// Take the writers' lock (blocks while another writer holds it); released when dropped.
fn open_lock(path: &Path) -> std::io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path(path))?;
    file.lock()?;
    Ok(file)
}

fn encode(state: &ProfileState) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(state).expect("profiles always serialize");
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Violation;

    fn open(dir: &Path) -> Arc<FileStore> {
        let snapshot: SharedSnapshot = Arc::new(arc_swap::ArcSwap::from_pointee(
            crate::decision::Snapshot::default(),
        ));
        FileStore::open(dir, Limits::default(), snapshot, Arc::new(Metrics::new())).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn every_write_keeps_the_store_rules_and_aborts_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let path = dir.path().join(PROFILES_FILE);
        let before = std::fs::read(&path).unwrap();

        // A duplicate name and a change of an immutable field are refused; the file is untouched.
        let duplicate = store
            .update(Box::new(|state: &mut ProfileState| {
                let copy = state.fargate_profiles[0].clone();
                state.fargate_profiles.push(copy);
                Step::Commit
            }))
            .await;
        assert!(matches!(
            duplicate,
            Err(UpdateError::Violation(Violation::DuplicateName))
        ));
        let moved = store
            .update(Box::new(|state: &mut ProfileState| {
                state.fargate_profiles[0].subnets.push("subnet-x".into());
                Step::Commit
            }))
            .await;
        assert!(
            matches!(moved, Err(UpdateError::Violation(Violation::Immutable(ref n))) if n == "example")
        );
        // An aborted change writes nothing, even if it touched the state it was given.
        let aborted = store
            .update(Box::new(|state: &mut ProfileState| {
                state.fargate_profiles.clear();
                Step::Abort
            }))
            .await;
        assert!(matches!(aborted, Ok(Updated::Aborted)));
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(store.current().fargate_profiles.len(), 1);

        // Tags may change.
        let tagged = store
            .update(Box::new(|state: &mut ProfileState| {
                let tags = &mut state.fargate_profiles[0].tags;
                tags.insert("team".into(), "a".into());
                Step::Commit
            }))
            .await;
        assert!(
            matches!(tagged, Ok(Updated::Committed(ref s)) if s.fargate_profiles[0].tags.len() == 1)
        );
        assert!(store.is_loaded());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn opening_removes_temporaries_of_killed_writers() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(".profiles.json.tmp-99999");
        std::fs::write(&stale, b"{\"fargateProfiles\": [").unwrap();
        let store = open(dir.path());
        assert!(
            !stale.exists(),
            "a killed writer's temporary file survived a restart"
        );
        assert!(store.is_loaded());
        assert!(dir.path().join(PROFILES_FILE).exists());
    }
}
