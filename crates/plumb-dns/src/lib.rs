//! plumb-dns: the embedded resolver every sandbox reaches at 127.0.0.11.
//!
//! - [`wire`]: parse one question, build answers and errors (pure, fuzzed).
//! - [`server::DnsServer`]: serves sockets it is given (opened inside each sandbox by the
//!   caller), answers names of the sandbox's networks from plumb-core's name index, forwards
//!   the rest.
//! - [`upstream`]: UDP with TCP fallback, a short timeout per server, fail-over.
//! - [`metrics::Metrics`]: counters in the Prometheus text format.

pub mod metrics;
pub mod server;
pub mod upstream;
pub mod wire;

pub use server::DnsServer;
