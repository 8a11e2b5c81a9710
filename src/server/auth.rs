//! Server-side credentials: access key id -> secret access key.
//!
//! lakeFS quickstart's well-known keys are the default, accepted only when the server listens on loopback
//! (DESIGN §5); anywhere else keys must be configured (flag, environment or file).

use std::collections::BTreeMap;
use std::net::SocketAddr;

pub const QUICKSTART_ACCESS_KEY_ID: &str = "AKIAIOSFOLQUICKSTART";
pub const QUICKSTART_SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
/// User id reported for every key (lakeFS quickstart's admin user).
pub const DEFAULT_USER: &str = "quickstart";

#[derive(Clone, Default)]
pub struct Credentials {
    keys: BTreeMap<String, String>,
}

// Secrets never reach logs.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Credentials {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn quickstart() -> Self {
        let mut c = Self::new();
        c.add(QUICKSTART_ACCESS_KEY_ID, QUICKSTART_SECRET_ACCESS_KEY);
        c
    }

    pub fn add(&mut self, access_key_id: &str, secret_access_key: &str) {
        self.keys
            .insert(access_key_id.to_string(), secret_access_key.to_string());
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The secret of `access_key_id`, if the key is known.
    pub fn secret(&self, access_key_id: &str) -> Option<&str> {
        self.keys.get(access_key_id).map(String::as_str)
    }

    /// True when `access_key_id`/`secret` is a configured pair (constant-time on the secret).
    pub fn verify(&self, access_key_id: &str, secret: &str) -> bool {
        match self.secret(access_key_id) {
            Some(expected) => constant_time_eq(expected.as_bytes(), secret.as_bytes()),
            None => false,
        }
    }

    /// The credentials the server starts with when none are configured: quickstart keys on loopback only.
    pub fn default_for(listen: SocketAddr) -> Option<Self> {
        listen.ip().is_loopback().then(Self::quickstart)
    }
}

/// Compares without an early exit, so response timing does not leak how much of a secret matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quickstart_keys_only_on_loopback() {
        assert!(Credentials::default_for("127.0.0.1:8000".parse().unwrap()).is_some());
        assert!(Credentials::default_for("[::1]:8000".parse().unwrap()).is_some());
        assert!(Credentials::default_for("0.0.0.0:8000".parse().unwrap()).is_none());
    }

    #[test]
    fn verify_checks_pair() {
        let c = Credentials::quickstart();
        assert!(c.verify(QUICKSTART_ACCESS_KEY_ID, QUICKSTART_SECRET_ACCESS_KEY));
        assert!(!c.verify(QUICKSTART_ACCESS_KEY_ID, "wrong"));
        assert!(!c.verify("AKIAUNKNOWN", QUICKSTART_SECRET_ACCESS_KEY));
        assert!(format!("{c:?}").find("EXAMPLEKEY").is_none());
    }
}
