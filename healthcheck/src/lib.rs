//! The health checker: probes every backend of a GLB-style config, dampens
//! the results, and pushes verdicts to every director (docs/healthcheck.md).
//!
//! The decisions are pure and free of I/O, as in quinn-proto: [`dampen`]
//! (rise, fall, unknown at start), [`engine`] (verdicts per backend,
//! self-suspicion), [`schedule`] (intervals and jitter) and [`proxy`] (the
//! PROXY protocol header) take plain data and are unit-tested without a
//! network. [`probe`], [`push`] and [`serve`] do the I/O.

pub mod checks;
pub mod dampen;
pub mod engine;
pub mod gue;
pub mod metrics;
pub mod probe;
pub mod proxy;
pub mod push;
pub mod run;
pub mod schedule;
pub mod serve;
pub mod settings;
pub mod tls;
