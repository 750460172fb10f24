//! fargate-webhook: the EKS Fargate-profile control plane for any Kubernetes cluster.
//!
//! Data flows one way: a store publishes profile snapshots → [`decision`] reads the current one
//! through `arc-swap` → the [`server`] only decodes, asks [`decision`], encodes.

pub mod admission;
pub mod api;
pub mod app;
pub mod certs;
pub mod claim;
pub mod cli;
pub mod decision;
pub mod explain;
pub mod files;
pub mod managed_tls;
pub mod match_conditions;
pub mod metrics;
pub mod probe;
pub mod profile;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod units;
