//! Directory watching for hot reload. We watch the *directory* (not the file): Kubernetes Secret
//! and ConfigMap volumes change by swapping a `..data` symlink, which a watch on the file never sees,
//! and editors and our own atomic writes replace files by rename.
//!
//! Two traps are avoided:
//! - inotify also reports opens and reads: a reload reading the file would trigger the next
//!   reload, forever. Only events that change something (create, write, remove, rename, metadata)
//!   count; reads and opens are ignored.
//! - a watch follows the directory's inode, not its path: after `mv dir dir.old; mkdir dir` it
//!   would keep watching `dir.old`. Every second the task checks which inode each path names and
//!   watches a replaced directory again (then reloads). A watch on the parent directory would see
//!   the replacement at once, but it also reports every write to every sibling file (a log next to
//!   the state directory cost the webhook two thirds of its throughput under load): one `stat` a
//!   second per directory is cheaper.

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Bursts of events (write, chmod, rename) are folded into one callback after this quiet time.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// How often the paths are checked for a replaced directory.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// Whether an event can mean that a file changed (reads and opens cannot).
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// A watched directory: its path and the inode the watch is on.
struct Watched {
    dir: PathBuf,
    inode: Option<u64>,
}

fn inode(path: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).ok()?).into()
    }
    #[cfg(not(unix))]
    {
        std::fs::metadata(path).ok().map(|_| 0)
    }
}

/// Absolute, so that event paths (absolute or as registered) compare with it.
fn absolute(dir: &Path) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// Call `on_change` after any change in one of `dirs`. The watch lives as long as the returned task.
pub fn watch_dirs<F>(
    dirs: Vec<PathBuf>,
    on_change: F,
) -> notify::Result<tokio::task::JoinHandle<()>>
where
    F: Fn() + Send + Sync + 'static,
{
    let mut watched: Vec<Watched> = Vec::new();
    for dir in dirs.iter().map(|d| absolute(d)) {
        if !watched.iter().any(|w| w.dir == dir) {
            watched.push(Watched {
                inode: inode(&dir),
                dir,
            });
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && is_change(&event.kind)
        {
            let _ = tx.send(());
        }
    })?;
    for w in &watched {
        watcher.watch(&w.dir, RecursiveMode::NonRecursive)?;
    }
    let on_change = std::sync::Arc::new(on_change);
    Ok(tokio::spawn(async move {
        let mut watcher = watcher; // dropped (and the watches removed) with the task
        let mut follow = tokio::time::interval(FOLLOW_EVERY);
        follow.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = rx.recv() => {
                    if event.is_none() {
                        break;
                    }
                    tokio::time::sleep(DEBOUNCE).await;
                    while rx.try_recv().is_ok() {}
                    follow_replaced_dirs(&mut watcher, &mut watched);
                }
                _ = follow.tick() => {
                    if !follow_replaced_dirs(&mut watcher, &mut watched) {
                        continue;
                    }
                }
            }
            // Reloads read files and may wait for a writer's fsync: keep them off the workers
            // that serve requests.
            let on_change = std::sync::Arc::clone(&on_change);
            let _ = tokio::task::spawn_blocking(move || on_change()).await;
        }
    }))
}

/// Watch again every directory whose path now names another inode (it was replaced). Returns
/// whether one was.
fn follow_replaced_dirs(watcher: &mut RecommendedWatcher, watched: &mut [Watched]) -> bool {
    let mut replaced = false;
    for w in watched.iter_mut() {
        let now = inode(&w.dir);
        if now != w.inode && now.is_some() {
            let _ = watcher.unwatch(&w.dir);
            match watcher.watch(&w.dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    tracing::info!(dir = %w.dir.display(), "watched directory was replaced; following the new one");
                    w.inode = now;
                    replaced = true;
                }
                Err(error) => {
                    tracing::warn!(dir = %w.dir.display(), %error, "could not watch the replaced directory");
                }
            }
        }
    }
    replaced
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &std::path::Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(400)).await;
    }

    async fn changes_after(calls: &AtomicUsize, before: usize, what: &str) -> usize {
        for _ in 0..100 {
            let now = calls.load(Ordering::SeqCst);
            if now > before {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no callback after {what}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_do_not_trigger_writes_do_and_a_replaced_directory_is_followed() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("state");
        std::fs::create_dir(&dir).unwrap();
        let file = dir.join("profiles.json");
        std::fs::write(&file, b"{}").unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        // The callback reads the file, as a reload does: that must not trigger another call.
        let read_back = file.clone();
        let _watch = watch_dirs(vec![dir.clone()], move || {
            let _ = std::fs::read(&read_back);
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        settle().await;

        for _ in 0..20 {
            std::fs::read(&file).unwrap();
        }
        settle().await;
        assert_eq!(calls.load(Ordering::SeqCst), 0, "reads triggered a reload");

        std::fs::write(&file, b"{\"a\": 1}").unwrap();
        let after_write = changes_after(&calls, 0, "a write").await;
        settle().await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            after_write,
            "the callback's own read triggered another call"
        );

        // Replace the whole directory; an edit in the new one is still seen.
        std::fs::rename(&dir, base.path().join("state.old")).unwrap();
        std::fs::create_dir(&dir).unwrap();
        settle().await;
        let before = calls.load(Ordering::SeqCst);
        std::fs::write(dir.join("profiles.json"), b"{\"b\": 2}").unwrap();
        changes_after(&calls, before, "an edit in the replaced directory").await;
    }
}
