//! The one test library of the integration tests: every `tests/*.rs` suite that needs a helper
//! includes it with
//!
//! ```ignore
//! #[allow(dead_code)] // each test binary uses only part of the library
//! mod support;
//! ```
//!
//! Cargo compiles this module once per test binary, so the `dead_code` allowance sits on that
//! `mod` line rather than on the library itself.
//!
//! One concept per file:
//!
//! - [`fixtures`]: the profile builder ([`ProfileBuilder`]), profiles files, fixture paths;
//! - [`review`]: AdmissionReview builders based on the ReplicaSet fixture, and [`Answer`];
//! - [`patch`]: JSON pointers and a strict RFC 6902 `add`/`replace` applier;
//! - [`server`]: the real server (`app::start`) on ephemeral ports over a tempdir [`Layout`];
//! - [`client`]: TLS clients speaking HTTP/2 or HTTP/1.1, a plain-HTTP client, [`Reply`];
//! - [`certs`]: generated certificates and what the tests read from them;
//! - [`files`]: atomic writes and kubelet-style volume updates;
//! - [`metrics`]: a Prometheus text reader;
//! - [`wait`]: polling with a deadline;
//! - [`api_server`]: the EKS API alone over plain HTTP with a file store (the `api_*` suites);
//! - [`process`]: the real `fargate-webhook` binary as a child process;
//! - [`fake_kube`]: an in-memory Kubernetes API server behind kube-rs's mocked service;
//! - [`fake_core`]: the Pods, Nodes and Events of that server, for the scheduler;
//! - [`fake_tls`]: its Secrets and MutatingWebhookConfigurations, for the managed TLS mode.
//!
//! The first nine are re-exported here (`use support::*;`); the last five are named by the
//! suites that use them (`use support::api_server::*;`).

pub mod api_server;
pub mod certs;
pub mod client;
pub mod fake_core;
pub mod fake_kube;
pub mod fake_tls;
pub mod files;
pub mod fixtures;
pub mod metrics;
pub mod patch;
pub mod process;
pub mod review;
pub mod server;
pub mod wait;

// A test binary that names nothing of a module would see its re-export as unused.
#[allow(unused_imports)]
pub use {
    certs::*, client::*, files::*, fixtures::*, metrics::*, patch::*, review::*, server::*, wait::*,
};
