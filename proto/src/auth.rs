//! The admin credential: who may change roles, push tables and replicate.
//!
//! Nodes and routers serve their admin and replication commands on the same port as clients
//! (a router's port is what its Service exposes). Without a credential, any pod that can reach
//! that port could depose a leader, fetch the whole dataset or point the routers elsewhere. So
//! an installation has one secret (a Kubernetes Secret, or a file in the local platform's data
//! folder); servers started with it refuse the [`PRIVILEGED`] commands until the connection has
//! presented it, Redis-style: `AUTH [admin] <secret>` or `HELLO <ver> AUTH admin <secret>`.
//!
//! A process that holds the credential (the operator; a node, which fetches from its leader)
//! registers it once with [`use_credential`], and every [`crate::Client`] it connects then
//! authenticates first. A server with no secret configured accepts everything, as before.

use crate::frame::Frame;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// The user name of the admin credential (`AUTH admin <secret>`); `default` is accepted too,
/// so `AUTH <secret>` works as with Redis.
pub const ADMIN_USER: &str = "admin";

/// Commands that need the admin credential: role changes, ownership (a split's fence),
/// replication and resync (they read every key), and table pushes. `NODE.STATUS` and
/// `TABLE.GET` stay open: they change nothing.
pub const PRIVILEGED: &[&str] = &[
    "NODE.LEAD",
    "NODE.FOLLOW",
    "NODE.FREEZE",
    "NODE.OWN",
    "REPL.FETCH",
    "REPL.INDEX",
    "SNAP.NEXT",
    "TABLE.PUSH",
];

/// Whether an upper-case command name needs the admin credential.
pub fn is_privileged(name: &[u8]) -> bool {
    PRIVILEGED.iter().any(|p| p.as_bytes() == name)
}

/// The reply to a privileged command on a connection that has not authenticated.
pub fn refusal(name: &[u8]) -> Frame {
    Frame::Error(format!(
        "NOAUTH Authentication required: {} needs the admin credential (AUTH admin <secret>)",
        String::from_utf8_lossy(name)
    ))
}

/// The installation's secret. Compared in constant time; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read.
    #[error("cannot read the admin secret from {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is empty or holds spaces or control characters.
    #[error("the admin secret in {path} must be one line of at least 16 printable characters without spaces")]
    Invalid {
        /// The file.
        path: String,
    },
}

impl Secret {
    /// A secret from its text; `None` unless it is at least 16 printable ASCII characters
    /// without spaces (it travels as a RESP argument and in files).
    pub fn new(text: &str) -> Option<Secret> {
        let ok = text.len() >= 16 && text.bytes().all(|b| b.is_ascii_graphic());
        ok.then(|| Secret(text.to_string()))
    }

    /// Read a secret file (one line; surrounding whitespace ignored).
    pub fn load(path: &Path) -> Result<Secret, SecretError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Secret::new(text.trim()).ok_or_else(|| SecretError::Invalid {
            path: path.display().to_string(),
        })
    }

    /// The secret's text, to send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `user` / `password` present this secret (constant time in the password).
    pub fn accepts(&self, user: Option<&str>, password: &[u8]) -> bool {
        let user_ok = matches!(user, None | Some(ADMIN_USER) | Some("default"));
        let mine = self.0.as_bytes();
        let mut diff = mine.len() ^ password.len();
        for (i, b) in mine.iter().enumerate() {
            diff |= usize::from(b ^ password.get(i).copied().unwrap_or(0));
        }
        user_ok && diff == 0
    }
}

static CREDENTIAL: RwLock<Option<Arc<Secret>>> = RwLock::new(None);

/// Register the credential this process presents on every [`crate::Client`] connection.
pub fn use_credential(secret: Option<Secret>) {
    *CREDENTIAL.write().unwrap_or_else(|e| e.into_inner()) = secret.map(Arc::new);
}

/// The credential this process presents, if any.
pub fn credential() -> Option<Arc<Secret>> {
    CREDENTIAL.read().unwrap_or_else(|e| e.into_inner()).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_checked_in_full_and_never_printed() {
        let s = Secret::new("0123456789abcdef").unwrap();
        assert!(s.accepts(None, b"0123456789abcdef"));
        assert!(s.accepts(Some("admin"), b"0123456789abcdef"));
        assert!(s.accepts(Some("default"), b"0123456789abcdef"));
        assert!(!s.accepts(Some("bob"), b"0123456789abcdef"));
        assert!(!s.accepts(None, b"0123456789abcde"));
        assert!(!s.accepts(None, b"0123456789abcdef0"));
        assert!(!s.accepts(None, b""));
        assert_eq!(format!("{s:?}"), "Secret(..)");
        assert!(Secret::new("short").is_none());
        assert!(Secret::new("has a space in it, long").is_none());
    }

    #[test]
    fn privileged_commands_are_the_admin_and_replication_ones() {
        for name in [
            "NODE.LEAD",
            "NODE.FOLLOW",
            "REPL.FETCH",
            "SNAP.NEXT",
            "TABLE.PUSH",
        ] {
            assert!(is_privileged(name.as_bytes()), "{name}");
        }
        for name in [
            "NODE.STATUS",
            "TABLE.GET",
            "INSERT",
            "SELECT",
            "REQ",
            "AUTH",
        ] {
            assert!(!is_privileged(name.as_bytes()), "{name}");
        }
        let Frame::Error(e) = refusal(b"NODE.LEAD") else {
            panic!()
        };
        assert!(e.starts_with("NOAUTH "), "{e}");
    }
}
