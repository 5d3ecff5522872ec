//! Sans-IO protocol cores: bytes in, bytes and decisions out. No sockets,
//! files, clocks or runtime types here, so everything is unit-testable and
//! fuzzable without a network.
#![forbid(unsafe_code)]

pub mod auth;
pub mod connect;
pub mod cstp;
pub mod dtls;
pub mod http;
pub mod ip;
pub mod ldap;
mod md5;
pub mod oath;
pub mod offload;
pub mod ports;
pub mod proxy;
pub mod radius;
pub mod reply;
pub mod timers;
pub mod x509name;
