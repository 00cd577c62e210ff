//! SCRAM-SHA-256 (RFC 5802/7677) as the server: verifying a client's proof against a stored
//! verifier. No channel binding (pgdog offers only `SCRAM-SHA-256`, not the `-PLUS` variant).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::AuthError;

type HmacSha256 = Hmac<Sha256>;

/// Iterations used when pgdog derives a verifier from a plaintext password (Postgres' default).
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// A SCRAM-SHA-256 verifier, as stored by Postgres in `pg_authid.rolpassword`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramSecret {
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// Salt bytes.
    pub salt: Vec<u8>,
    /// H(ClientKey).
    pub stored_key: [u8; 32],
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: [u8; 32],
}

impl ScramSecret {
    /// Parses `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("SCRAM-SHA-256$")?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        Some(ScramSecret {
            iterations: iterations.parse().ok().filter(|i| *i > 0)?,
            salt: B64.decode(salt).ok()?,
            stored_key: B64.decode(stored).ok()?.try_into().ok()?,
            server_key: B64.decode(server).ok()?.try_into().ok()?,
        })
    }

    /// Derives a verifier from a plaintext password with a random salt.
    pub fn from_password(password: &str) -> Self {
        let mut salt = vec![0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        Self::derive(password, salt, DEFAULT_ITERATIONS)
    }

    /// Derives a verifier from a password, salt and iteration count.
    pub fn derive(password: &str, salt: Vec<u8>, iterations: u32) -> Self {
        // SASLprep is skipped: for ASCII passwords it is the identity, and Postgres itself
        // falls back to the raw bytes when a password is not valid for SASLprep.
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        ScramSecret {
            iterations,
            salt,
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, b"Server Key"),
        }
    }

    /// A verifier no password matches, used for unknown users so they look like wrong passwords.
    pub fn impossible() -> Self {
        let mut stored_key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut stored_key);
        ScramSecret {
            iterations: DEFAULT_ITERATIONS,
            salt: stored_key[..16].to_vec(),
            stored_key,
            server_key: [0; 32],
        }
    }
}

impl std::fmt::Display for ScramSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// One server-side SCRAM exchange, between the client-first and the client-final message.
pub struct ScramExchange {
    secret: ScramSecret,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl ScramExchange {
    /// Takes the client-first-message and returns the exchange and the server-first-message.
    pub fn start(secret: ScramSecret, client_first: &[u8]) -> Result<(Self, String), AuthError> {
        let text =
            std::str::from_utf8(client_first).map_err(|_| AuthError::Malformed("not UTF-8"))?;
        let (cbind_flag, rest) = text
            .split_once(',')
            .ok_or(AuthError::Malformed("missing GS2 header"))?;
        if cbind_flag != "n" && cbind_flag != "y" {
            return Err(AuthError::Malformed("channel binding is not supported"));
        }
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(AuthError::Malformed("missing GS2 header"))?;
        let client_nonce = bare
            .split(',')
            .find_map(|attr| attr.strip_prefix("r="))
            .filter(|n| !n.is_empty())
            .ok_or(AuthError::Malformed("missing client nonce"))?;
        let mut server_nonce = [0u8; 18];
        rand::thread_rng().fill_bytes(&mut server_nonce);
        let nonce = format!("{client_nonce}{}", B64.encode(server_nonce));
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&secret.salt),
            secret.iterations
        );
        let exchange = ScramExchange {
            secret,
            gs2_header: format!("{cbind_flag},{authzid},"),
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok((exchange, server_first))
    }

    /// Verifies the client-final-message; on success returns the server-final-message.
    pub fn finish(self, client_final: &[u8]) -> Result<String, AuthError> {
        let text =
            std::str::from_utf8(client_final).map_err(|_| AuthError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(AuthError::Malformed("missing proof"))?;
        let mut attrs = without_proof.split(',');
        let cbind = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(AuthError::Malformed("missing channel binding"))?;
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(AuthError::Malformed("missing nonce"))?;
        if B64.decode(cbind).ok().as_deref() != Some(self.gs2_header.as_bytes()) {
            return Err(AuthError::Malformed("channel binding does not match"));
        }
        if nonce != self.nonce {
            return Err(AuthError::Malformed("nonce does not match"));
        }
        let proof: [u8; 32] = B64
            .decode(proof)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or(AuthError::Malformed("invalid proof"))?;
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let client_signature = hmac(&self.secret.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; 32];
        for i in 0..32 {
            client_key[i] = proof[i] ^ client_signature[i];
        }
        let computed: [u8; 32] = Sha256::digest(client_key).into();
        let diff = computed
            .iter()
            .zip(self.secret.stored_key.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(AuthError::WrongPassword);
        }
        let server_signature = hmac(&self.secret.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    fn exchange(secret: ScramSecret, password: &str) -> Result<(), AuthError> {
        let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        let (server, server_first) = ScramExchange::start(secret, client.message())?;
        client
            .update(server_first.as_bytes())
            .map_err(|_| AuthError::Malformed("client rejected server-first"))?;
        let server_final = server.finish(client.message())?;
        client
            .finish(server_final.as_bytes())
            .map_err(|_| AuthError::Malformed("client rejected server signature"))
    }

    #[test]
    fn postgres_protocol_client_authenticates() {
        assert_eq!(exchange(ScramSecret::from_password("pw"), "pw"), Ok(()));
        assert_eq!(
            exchange(ScramSecret::from_password("pw"), "nope"),
            Err(AuthError::WrongPassword)
        );
    }

    #[test]
    fn parses_postgres_verifiers() {
        let stored = postgres_protocol::password::scram_sha_256(b"hunter2");
        let secret = ScramSecret::parse(&stored).unwrap();
        assert_eq!(secret.to_string(), stored);
        assert_eq!(exchange(secret, "hunter2"), Ok(()));
        assert!(ScramSecret::parse("SCRAM-SHA-256$0:AA==$x:y").is_none());
        assert!(ScramSecret::parse("md5abc").is_none());
    }

    #[test]
    fn garbage_is_malformed_not_panic() {
        let secret = ScramSecret::from_password("pw");
        for input in [
            &b""[..],
            b"n",
            b"p=tls-unique,,n=,r=x",
            b"n,,n=",
            b"\xff\xfe",
        ] {
            assert!(ScramExchange::start(secret.clone(), input).is_err());
        }
        let (server, _) = ScramExchange::start(secret, b"n,,n=,r=abc").unwrap();
        assert!(server.finish(b"c=biws,r=abc,p=!!!").is_err());
    }
}
