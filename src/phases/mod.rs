//! Phases (docs/online.md): changes that run after the deployment commits,
//! in order, by a background worker running as the deploying role. apply
//! queues them with the deployment; the worker runs and records them; wait
//! and phase_status report on them and restart a worker that is gone.

mod client;
pub mod kind;
pub mod launch;
mod online;
pub mod plan;
pub mod queue;
mod run;
mod toplevel;
pub mod wait;
mod worker;
