//! The layers point one way (README, "Layout"): every `crate::<module>` a module's non-test code
//! names must be one of the modules it is allowed to know. A new back-arrow fails this test.
//!
//! profile ← decision ← admission ← server (webhook handler); profile ← store ← api;
//! files and metrics are leaves; cli and app sit on top and may use anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module → the modules its non-test code may name.
fn allowed() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        ("profile", &[][..]),
        ("files", &[][..]),
        ("decision", &["profile"][..]),
        ("admission", &["decision", "profile"][..]),
        ("metrics", &["decision", "profile"][..]),
        ("server", &["admission", "decision", "metrics", "files"][..]),
        (
            "store",
            &["profile", "decision", "metrics", "files", "claim"][..],
        ),
        ("units", &[][..]),
        ("claim", &[][..]),
        (
            "api",
            &["profile", "store", "metrics", "server", "units", "claim"][..],
        ),
        ("certs", &["files"][..]),
        ("managed_tls", &["server", "claim"][..]),
        (
            "match_conditions",
            &["decision", "profile", "store", "metrics", "claim"][..],
        ),
        (
            "scheduler",
            &["profile", "decision", "metrics", "claim"][..],
        ),
        ("probe", &["admission"][..]),
        (
            "explain",
            &["profile", "decision", "scheduler", "store"][..],
        ),
    ])
}

/// The top-level module a file under `src/` belongs to.
fn module_of(path: &Path, src: &Path) -> String {
    let rel = path.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    first.trim_end_matches(".rs").to_owned()
}

/// Every `crate::name` in the text before the file's `#[cfg(test)]` (tests live at the end).
fn crate_refs(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let mut refs = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if rest.starts_with('{') {
            let inner = &rest[1..rest.find('}').unwrap_or(rest.len())];
            for item in inner.split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    refs.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            refs.insert(name);
        }
    }
    refs
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn dependencies_point_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed = allowed();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    let mut checked = 0;
    for file in &files {
        let module = module_of(file, &src);
        let Some(may) = allowed.get(module.as_str()) else {
            continue; // cli, app, main, lib: the top
        };
        checked += 1;
        let text = std::fs::read_to_string(file).unwrap();
        for target in crate_refs(&text) {
            if target != module && !may.contains(&target.as_str()) {
                violations.push(format!(
                    "{} uses crate::{target}",
                    file.strip_prefix(&src).unwrap().display()
                ));
            }
        }
    }
    assert!(
        checked > 20,
        "the walk found only {checked} files under src/"
    );
    assert!(
        violations.is_empty(),
        "arrows pointing the wrong way:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_check_sees_both_forms_of_a_crate_path() {
    let refs = crate_refs(
        "use crate::store::{A, B};\nuse crate::{api, profile::X};\nlet x = crate::ops::m();\n#[cfg(test)]\nuse crate::app;",
    );
    assert_eq!(
        refs,
        BTreeSet::from(["store".into(), "api".into(), "profile".into(), "ops".into()])
    );
}
