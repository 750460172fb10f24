//! File-system helpers shared by the stores, the certificate reloader and `certs generate`: atomic
//! replacement of a file and directory watching. They know nothing of profiles or certificates.

pub mod atomic;
pub mod watch;

pub use atomic::{remove_stale_temporaries, write_atomic, write_atomic_private};
pub use watch::{parent_dir, watch_dirs};
