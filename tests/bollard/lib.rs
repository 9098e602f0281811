//! End-to-end checks of plumbd with bollard, the Rust Docker SDK (tests only).
