//! The `callagent` command's library: for now, the Azure Communication Services identity REST
//! client ([`identity`]) that `callagent doctor` mints tokens with and the monitor will reuse.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod doctor;
pub mod identity;
pub mod monitor;
pub mod token;
mod transport;
mod watch;
