//! The ops port: `/healthz`, `/readyz`, `/metrics` (plain HTTP).

pub mod metrics;
