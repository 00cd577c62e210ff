//! Password secrets and the server side of client authentication (SCRAM-SHA-256 and md5).
//! The client side (pgdog logging in to Postgres) uses `postgres-protocol` in `backend::server`.

pub mod md5;
pub mod scram;

pub use scram::{ScramExchange, ScramSecret};

/// Why a client failed to authenticate.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// The SASL exchange was malformed.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The proof or password did not match.
    #[error("password authentication failed")]
    WrongPassword,
}

/// What pgdog knows of a user's password: enough to verify clients with either method.
#[derive(Debug, Clone)]
pub struct UserSecret {
    /// SCRAM-SHA-256 verifier (derived from the plaintext, or given as `password_hash`).
    pub scram: Option<ScramSecret>,
    /// `md5` + hex(md5(password || user)), from the plaintext or a `password_hash`.
    pub md5: Option<String>,
}

impl UserSecret {
    /// Builds the secret from users.toml: plaintext `password` and/or `password_hash`.
    pub fn new(user: &str, password: Option<&str>, password_hash: Option<&str>) -> Self {
        let mut secret = UserSecret {
            scram: None,
            md5: None,
        };
        if let Some(password) = password {
            secret.scram = Some(ScramSecret::from_password(password));
            secret.md5 = Some(md5::password_hash(user, password));
        }
        if let Some(hash) = password_hash {
            if let Some(scram) = ScramSecret::parse(hash) {
                secret.scram = Some(scram);
            } else if md5::is_md5_hash(hash) {
                secret.md5 = Some(hash.to_string());
            }
        }
        secret
    }
}
