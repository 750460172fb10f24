//! The local store: `<state-dir>/profiles.json`, shared by the API (writer) and the webhook
//! (reader). Writes are atomic and durable (temporary file, fsync, rename, fsync of the directory),
//! so a profile acknowledged to a client survives `kill -9` and a reader never sees half a file.
//! A broken file (hand edit, bad ConfigMap) never replaces the last good snapshot.

use super::{BoxFuture, Change, ProfileStore, StoreState, UpdateError};
use crate::decision::{SharedSnapshot, Snapshot};
use crate::ops::metrics::Metrics;
use crate::profile::{self, FargateProfile, Limits, ProfilesFile, Selector};
use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub const PROFILES_FILE: &str = "profiles.json";

pub struct FileStore {
    path: PathBuf,
    limits: Limits,
    current: ArcSwap<StoreState>,
    /// Serialises writers and reloads, so a reload never overtakes a write in flight.
    write_lock: Mutex<()>,
    snapshot: SharedSnapshot,
    metrics: Arc<Metrics>,
    loaded: AtomicBool,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("path", &self.path)
            .finish()
    }
}

/// The profile a fresh state directory starts with, so `serve` does something visible at once.
pub fn example_profiles() -> ProfilesFile {
    ProfilesFile {
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
        if !path.exists() {
            write_atomic(&path, &encode(&example_profiles()))?;
            tracing::info!(path = %path.display(), "created a profiles file with an example profile");
        }
        let store = Arc::new(FileStore {
            path,
            limits,
            current: ArcSwap::from_pointee(StoreState::default()),
            write_lock: Mutex::new(()),
            snapshot,
            metrics,
            loaded: AtomicBool::new(false),
        });
        store.reload();
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a good snapshot has been loaded at least once.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
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
                if self.is_loaded() && *self.current.load_full() == state {
                    return true; // our own write, or a touch: nothing new
                }
                self.publish(Arc::new(state));
                self.loaded.store(true, Ordering::Release);
                self.metrics.reload("profiles", true);
                tracing::info!(path = %self.path.display(), "profiles reloaded");
                true
            }
            Err(error) => {
                self.metrics.reload("profiles", false);
                tracing::error!(path = %self.path.display(), %error, "profiles file rejected; keeping the last good snapshot");
                false
            }
        }
    }

    fn publish(&self, state: Arc<StoreState>) {
        let snapshot = Snapshot::new(state.fargate_profiles.clone());
        self.metrics.observe_snapshot(&snapshot);
        self.snapshot.store(Arc::new(snapshot));
        self.current.store(state);
    }

    /// Watch the state directory and reload on change.
    pub fn watch(self: &Arc<Self>) -> notify::Result<tokio::task::JoinHandle<()>> {
        let store = Arc::clone(self);
        crate::watch::watch_dirs(vec![crate::watch::parent_dir(&self.path)], move || {
            store.reload();
        })
    }

    fn update_blocking(&self, mut change: Change<'_>) -> Result<Arc<StoreState>, UpdateError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        if !self.is_loaded() {
            return Err(UpdateError::NotLoaded(format!(
                "{} is not a valid profiles file; fix it first",
                self.path.display()
            )));
        }
        // Writers in other processes sharing the directory serialise on this lock file.
        let lock_path = crate::watch::parent_dir(&self.path).join(".profiles.json.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .and_then(|file| file.lock().map(|()| file))
            .map_err(|e| UpdateError::Storage(format!("locking {}: {e}", lock_path.display())))?;
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
                (*self.current.load_full()).clone()
            }
            Err(e) => {
                return Err(UpdateError::Storage(format!(
                    "reading {}: {e}",
                    self.path.display()
                )));
            }
        };
        change(&mut next).map_err(UpdateError::Rejected)?;
        write_atomic(&self.path, &encode(&next))
            .map_err(|e| UpdateError::Storage(format!("writing {}: {e}", self.path.display())))?;
        drop(lock);
        let next = Arc::new(next);
        self.publish(Arc::clone(&next));
        self.loaded.store(true, Ordering::Release);
        Ok(next)
    }
}

impl ProfileStore for FileStore {
    fn current(&self) -> Arc<StoreState> {
        self.current.load_full()
    }

    fn update<'a>(
        &'a self,
        change: Change<'a>,
    ) -> BoxFuture<'a, Result<Arc<StoreState>, UpdateError>> {
        // The write is a few small syscalls plus two fsyncs; block_in_place keeps the borrowed
        // closure usable without forcing 'static on every caller.
        Box::pin(async move { tokio::task::block_in_place(|| self.update_blocking(change)) })
    }
}

fn encode(state: &StoreState) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(state).expect("profiles always serialize");
    bytes.push(b'\n');
    bytes
}

/// Replace `path` with `bytes` so that a crash at any moment leaves either the old or the new file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with_mode(path, bytes, 0o644)
}

/// [`write_atomic`] for secrets: the file is 0600 from its creation, never readable by others.
pub fn write_atomic_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with_mode(path, bytes, 0o600)
}

fn write_atomic_with_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = crate::watch::parent_dir(path);
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        // A temporary file left by a crash would keep its old mode: start from a new one.
        let _ = std::fs::remove_file(&tmp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        #[cfg(not(unix))]
        let _ = mode;
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
