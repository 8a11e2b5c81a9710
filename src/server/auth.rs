//! Server-side credentials: access key id -> secret access key.
//!
//! lakeFS quickstart's well-known keys are the default, accepted only when the server listens on loopback
//! (DESIGN §5); anywhere else keys must be configured (flag, environment or file).
//!
//! The keys are public (they are printed in lakeFS's documentation), so a server reachable from other machines
//! that accepts them is open to anyone. [`Credentials::for_listener`] refuses that whether the keys come by default
//! or were configured explicitly (a copied quickstart snippet), and [`crate::server::start`] checks it again, so
//! no caller can bind a public address with them by accident. The one way through is an explicit override
//! (`--allow-quickstart-keys-off-loopback`) for throwaway setups on a trusted network.

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

    /// True when either half of lakeFS quickstart's public key pair is configured.
    pub fn has_quickstart_key(&self) -> bool {
        self.keys.iter().any(|(id, secret)| {
            id == QUICKSTART_ACCESS_KEY_ID
                || constant_time_eq(secret.as_bytes(), QUICKSTART_SECRET_ACCESS_KEY.as_bytes())
        })
    }

    /// The credentials of a server listening on `listen`: `configured` keys, else quickstart's. Quickstart keys
    /// (default or configured) are refused off loopback unless `allow_quickstart_off_loopback`.
    pub fn for_listener(
        listen: SocketAddr,
        configured: Option<(&str, &str)>,
        allow_quickstart_off_loopback: bool,
    ) -> Result<Self, CredentialsError> {
        let credentials = match configured {
            Some((access_key_id, secret)) => {
                let mut c = Self::new();
                c.add(access_key_id, secret);
                c
            }
            None => Self::quickstart(),
        };
        credentials.check_listener(listen, allow_quickstart_off_loopback)?;
        Ok(credentials)
    }

    /// Refuses public keys on a listener other machines can reach.
    pub fn check_listener(
        &self,
        listen: SocketAddr,
        allow_quickstart_off_loopback: bool,
    ) -> Result<(), CredentialsError> {
        if self.is_empty() {
            return Err(CredentialsError::NoKeys);
        }
        if self.has_quickstart_key() && !listen.ip().is_loopback() && !allow_quickstart_off_loopback {
            return Err(CredentialsError::QuickstartOffLoopback { listen });
        }
        Ok(())
    }
}

/// Why a server refuses to start with its credentials.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("no access keys configured: set LAKEFS_FUSE_ACCESS_KEY_ID and LAKEFS_FUSE_SECRET_ACCESS_KEY")]
    NoKeys,
    #[error(
        "refusing to serve on {listen} with lakeFS quickstart's public keys (anyone who reads the lakeFS docs \
         knows them): set LAKEFS_FUSE_ACCESS_KEY_ID and LAKEFS_FUSE_SECRET_ACCESS_KEY to private keys, or listen \
         on 127.0.0.1; --allow-quickstart-keys-off-loopback overrides this for a trusted network"
    )]
    QuickstartOffLoopback { listen: SocketAddr },
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
    fn quickstart_keys_refused_off_loopback_even_when_configured() {
        let public: SocketAddr = "0.0.0.0:8000".parse().unwrap();
        let loopback: SocketAddr = "127.0.0.1:8000".parse().unwrap();
        let quickstart = Some((QUICKSTART_ACCESS_KEY_ID, QUICKSTART_SECRET_ACCESS_KEY));
        assert!(Credentials::for_listener(loopback, None, false).is_ok());
        assert!(Credentials::for_listener(loopback, quickstart, false).is_ok());
        for configured in [
            None,
            quickstart,
            Some((QUICKSTART_ACCESS_KEY_ID, "private-secret")),
            Some(("PRIVATEKEY", QUICKSTART_SECRET_ACCESS_KEY)),
        ] {
            let err = Credentials::for_listener(public, configured, false).unwrap_err();
            assert!(
                err.to_string().contains("--allow-quickstart-keys-off-loopback"),
                "{err}"
            );
            assert!(Credentials::for_listener(public, configured, true).is_ok());
        }
        let private = Credentials::for_listener(public, Some(("PRIVATEKEY", "private-secret")), false).unwrap();
        assert!(private.verify("PRIVATEKEY", "private-secret"));
        assert!(!private.verify(QUICKSTART_ACCESS_KEY_ID, QUICKSTART_SECRET_ACCESS_KEY));
        assert!(matches!(
            Credentials::new().check_listener(loopback, false),
            Err(CredentialsError::NoKeys)
        ));
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
