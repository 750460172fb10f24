//! Files as the server sees them change: atomic replacement, and kubelet-style volume updates.

use super::review::fresh_uid;
use serde_json::Value;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Replace `path` by rename from a temporary file in the same directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) {
    let dir = path.parent().expect("path has a parent");
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap().to_string_lossy(),
        fresh_uid("w")
    ));
    std::fs::write(&tmp, bytes).expect("write the temporary file");
    std::fs::rename(&tmp, path).expect("rename over the target");
}

pub fn write_json(path: &Path, value: &Value) {
    write_atomic(
        path,
        &serde_json::to_vec_pretty(value).expect("JSON serializes"),
    );
}

static VOLUME_SEQ: AtomicU64 = AtomicU64::new(1);

/// Publish `files` in `dir` the way the kubelet updates a Secret or ConfigMap volume: write them
/// into a new timestamped directory `..2026_…`, point a fresh symlink at it and rename that over
/// `..data` (one atomic step), and make sure each `dir/<name>` is a symlink to `..data/<name>`.
pub fn kube_volume_publish(dir: &Path, files: &[(&str, &[u8])]) {
    use std::os::unix::fs::symlink;
    std::fs::create_dir_all(dir).expect("create the volume directory");
    let version = format!(
        "..2026_01_01_00_00_{:02}.{}",
        VOLUME_SEQ.fetch_add(1, Ordering::Relaxed),
        std::process::id()
    );
    let version_dir = dir.join(&version);
    std::fs::create_dir(&version_dir).expect("create the version directory");
    for (name, bytes) in files {
        std::fs::write(version_dir.join(name), bytes).expect("write a volume file");
    }
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    symlink(&version, &tmp_link).expect("create ..data_tmp");
    std::fs::rename(&tmp_link, dir.join("..data")).expect("swap ..data");
    for (name, _) in files {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new("..data").join(name), &link).expect("create the file symlink");
        }
    }
}
