//! The md5 password method: `md5(md5(password || user) || salt)`.

use md5::{Digest, Md5};

/// `md5` + hex(md5(password || user)): what Postgres stores for md5 passwords.
pub fn password_hash(user: &str, password: &str) -> String {
    let mut h = Md5::new();
    h.update(password.as_bytes());
    h.update(user.as_bytes());
    format!("md5{}", hex(&h.finalize()))
}

/// Whether `s` looks like `md5` followed by 32 hex digits.
pub fn is_md5_hash(s: &str) -> bool {
    s.len() == 35 && s.starts_with("md5") && s[3..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The response a client sends for a stored md5 hash and a salt.
pub fn salted_response(stored_hash: &str, salt: [u8; 4]) -> String {
    let mut h = Md5::new();
    h.update(stored_hash.trim_start_matches("md5").as_bytes());
    h.update(salt);
    format!("md5{}", hex(&h.finalize()))
}

/// Whether the client's md5 response matches, compared in constant time.
pub fn verify(stored_hash: &str, salt: [u8; 4], response: &str) -> bool {
    let expected = salted_response(stored_hash, salt);
    expected.len() == response.len()
        && expected
            .bytes()
            .zip(response.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_postgres_client_hashing() {
        let stored = password_hash("bob", "secret");
        let salt = [1, 2, 3, 4];
        let client = postgres_protocol::authentication::md5_hash(b"bob", b"secret", salt);
        assert!(verify(&stored, salt, &client));
        assert!(!verify(&stored, [4, 3, 2, 1], &client));
        assert!(is_md5_hash(&stored));
    }
}
