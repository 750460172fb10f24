//! Stamps the version with the git revision it was built from (`--version`, the build-info metric):
//! `GIT_REVISION` when set (image builds without `.git`), else `git rev-parse`, else `unknown`.
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=GIT_REVISION");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs");
    let revision = std::env::var("GIT_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=FARGATE_WEBHOOK_REVISION={revision}");
    println!(
        "cargo:rustc-env=FARGATE_WEBHOOK_VERSION={} ({revision})",
        std::env::var("CARGO_PKG_VERSION").unwrap_or_default()
    );
}
