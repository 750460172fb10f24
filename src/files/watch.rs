//! Directory watching for hot reload. We watch the *directory* (not the file): Kubernetes Secret
//! and ConfigMap volumes change by swapping a `..data` symlink, which a watch on the file never sees,
//! and editors and our own atomic writes replace files by rename.

use notify::{RecursiveMode, Watcher};
use std::path::PathBuf;
use std::time::Duration;

/// Bursts of events (write, chmod, rename) are folded into one callback after this quiet time.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// Call `on_change` after any change in one of `dirs`. The watch lives as long as the returned task.
pub fn watch_dirs<F>(
    dirs: Vec<PathBuf>,
    on_change: F,
) -> notify::Result<tokio::task::JoinHandle<()>>
where
    F: Fn() + Send + Sync + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = tx.send(());
        }
    })?;
    let mut seen = std::collections::HashSet::new();
    for dir in dirs {
        if seen.insert(dir.clone()) {
            watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        }
    }
    let on_change = std::sync::Arc::new(on_change);
    Ok(tokio::spawn(async move {
        let _watcher = watcher; // dropped (and the watch removed) with the task
        while rx.recv().await.is_some() {
            tokio::time::sleep(DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            // Reloads read files and may wait for a writer's fsync: keep them off the workers
            // that serve requests.
            let on_change = std::sync::Arc::clone(&on_change);
            let _ = tokio::task::spawn_blocking(move || on_change()).await;
        }
    }))
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &std::path::Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
