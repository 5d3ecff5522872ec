//! ocserv-uring: a thread-per-core OpenConnect VPN server.
//!
//! `proto/` holds the sans-IO protocol cores, `sys/` the system calls behind
//! safe wrappers, `shard/` the glommio glue that moves bytes between them.
//! `unsafe` is denied everywhere but `sys`.
#![deny(unsafe_code)]

pub mod auth;
pub mod bans;
pub mod cfgedit;
pub mod config;
pub mod control;
pub mod ctl;
pub mod dae;
pub mod live;
pub mod logging;
pub mod metrics;
pub mod occtl;
pub mod ocservconf;
pub mod passwd;
pub mod pool;
pub use ocserv_proto as proto;
pub mod ratelimit;
pub mod server;
pub mod shard;
#[allow(unsafe_code)]
pub mod sys;
pub mod tls;
pub mod units;
pub mod usercfg;
pub mod vhost;
pub mod watch;
