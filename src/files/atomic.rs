//! Atomic file replacement: a crash at any moment leaves either the old or the new file, never a
//! mix. Used by the file store (profiles) and by `certs generate`.

use std::io::Write;
use std::path::Path;

/// Replace `path` with `bytes` so that a crash at any moment leaves either the old or the new file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with_mode(path, bytes, 0o644)
}

/// [`write_atomic`] for secrets: the file is 0600 from its creation, never readable by others.
pub fn write_atomic_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with_mode(path, bytes, 0o600)
}

fn write_atomic_with_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = super::parent_dir(path);
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let tmp = dir.join(format!("{}{}", temp_prefix(&file_name), std::process::id()));
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

/// The prefix of the temporary files [`write_atomic`] makes for `file_name` (the pid follows).
fn temp_prefix(file_name: &str) -> String {
    format!(".{file_name}.tmp-")
}

/// Remove the temporary files that writes of `path` left behind when their process was killed.
/// Call it only while holding the lock that writers of `path` hold while writing: then no
/// temporary file belongs to a write in progress. Returns how many were removed.
pub fn remove_stale_temporaries(path: &Path) -> usize {
    let dir = super::parent_dir(path);
    let Some(file_name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return 0;
    };
    let prefix = temp_prefix(&file_name);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_ours = name
            .strip_prefix(&prefix)
            .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
        if is_ours && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temporaries_of_this_file_go_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profiles.json");
        write_atomic(&path, b"{}").unwrap();
        for name in [".profiles.json.tmp-123", ".profiles.json.tmp-4567"] {
            std::fs::write(dir.path().join(name), b"half").unwrap();
        }
        let keep = [
            ".profiles.json.tmp-",
            ".profiles.json.tmp-12x",
            ".other.json.tmp-1",
            "profiles.json",
        ];
        for name in &keep[..3] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        assert_eq!(remove_stale_temporaries(&path), 2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want: Vec<String> = keep.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(left, want);
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
    }
}
