//! Identifiers of CNM objects: 64 lowercase hex digits, like Docker's.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A fresh random identifier.
            pub fn random() -> Self {
                Self(random_hex())
            }

            /// Parses a full 64-hex identifier; `None` when `s` is not one.
            pub fn parse(s: &str) -> Option<Self> {
                is_full_id(s).then(|| Self(s.to_owned()))
            }

            /// The full identifier.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The first 12 hex digits, as `docker network ls` shows them.
            pub fn short(&self) -> &str {
                self.0.get(..12).unwrap_or(&self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }
    };
}

id_type!(
    /// Identifies a network.
    NetworkId
);
id_type!(
    /// Identifies an endpoint.
    EndpointId
);
id_type!(
    /// Identifies a sandbox.
    SandboxId
);

/// True when `s` is 64 lowercase hex digits.
pub fn is_full_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// True when `s` could be a prefix of an identifier (1..=64 lowercase hex digits).
pub fn is_id_prefix(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn random_hex() -> String {
    let bytes: [u8; 32] = rand::random();
    let mut s = String::with_capacity(64);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_full_and_distinct() {
        let a = NetworkId::random();
        let b = NetworkId::random();
        assert!(is_full_id(a.as_str()));
        assert_ne!(a, b);
        assert_eq!(a.short().len(), 12);
    }

    #[test]
    fn parse_rejects_non_ids() {
        assert!(NetworkId::parse("abc").is_none());
        assert!(NetworkId::parse(&"G".repeat(64)).is_none());
        assert!(NetworkId::parse(&"a".repeat(64)).is_some());
    }
}
