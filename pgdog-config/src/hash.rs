//! Recognising the `password_hash` formats Postgres stores in `pg_authid.rolpassword`.

/// The kind of a well-formed `password_hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HashKind {
    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    Scram,
    /// `md5` followed by 32 lowercase hex digits.
    Md5,
}

/// Classifies `hash`, or explains what is wrong with it.
pub(crate) fn classify(hash: &str) -> Result<HashKind, &'static str> {
    if let Some(rest) = hash.strip_prefix("SCRAM-SHA-256$") {
        check_scram(rest).map(|()| HashKind::Scram)
    } else if let Some(hex) = hash.strip_prefix("md5") {
        if hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(HashKind::Md5)
        } else {
            Err("starts with md5 but is not followed by exactly 32 lowercase hex digits")
        }
    } else {
        Err("is neither a SCRAM-SHA-256 secret nor an md5 hash")
    }
}

/// Checks `<iterations>:<salt>$<StoredKey>:<ServerKey>`.
fn check_scram(rest: &str) -> Result<(), &'static str> {
    const SHAPE: &str = "looks like a SCRAM secret but does not have the shape \
                         SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>";
    let (iterations_salt, keys) = rest.split_once('$').ok_or(SHAPE)?;
    let (iterations, salt) = iterations_salt.split_once(':').ok_or(SHAPE)?;
    let (stored, server) = keys.split_once(':').ok_or(SHAPE)?;
    if iterations.is_empty()
        || !iterations.bytes().all(|b| b.is_ascii_digit())
        || matches!(iterations.parse::<u32>(), Err(_) | Ok(0))
    {
        return Err("is a SCRAM secret whose iteration count is not a positive whole number");
    }
    if matches!(base64_len(salt), None | Some(0)) {
        return Err("is a SCRAM secret whose salt is not base64");
    }
    if base64_len(stored) != Some(32) || base64_len(server) != Some(32) {
        return Err("is a SCRAM secret whose StoredKey or ServerKey is not 32 bytes of base64");
    }
    Ok(())
}

/// Decoded length of standard, padded base64, or `None` if `text` is not base64.
fn base64_len(text: &str) -> Option<usize> {
    if text.len() % 4 != 0 {
        return None;
    }
    let body = text.trim_end_matches('=');
    let padding = text.len() - body.len();
    let valid = body
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    (valid && padding <= 2).then(|| text.len() / 4 * 3 - padding)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SCRAM-SHA-256 secret of password "pgdog" (4096 iterations, salt "pgdog-example-salt").
    const SCRAM: &str = "SCRAM-SHA-256$4096:cGdkb2ctZXhhbXBsZS1zYWx0$\
        0hZGKo/AMUm0vdE3gA05+E8LIyJljDcBENKXjhvi3I0=:bk5wZ2l2MGn2TRsZpfEFl3J+68+nZnICJ5nelgvhyuY=";

    #[test]
    fn recognises_scram() {
        assert_eq!(classify(SCRAM), Ok(HashKind::Scram));
    }

    #[test]
    fn recognises_md5() {
        assert_eq!(
            classify("md5f4eebe911f99fc6bb9d624b6956b3e4b"),
            Ok(HashKind::Md5)
        );
    }

    #[test]
    fn rejects_malformed() {
        assert!(classify("md5F4EEBE911F99FC6BB9D624B6956B3E4B").is_err());
        assert!(classify("md5abc").is_err());
        assert!(classify("pgdog").is_err());
        assert!(classify("SCRAM-SHA-256$4096:c2FsdA==$abc:def").is_err());
        assert!(classify("SCRAM-SHA-256$0:c2FsdA==$x").is_err());
        assert!(classify(&SCRAM.replace("4096", "x")).is_err());
        assert_eq!(base64_len("c2FsdA=="), Some(4));
        assert_eq!(base64_len("c2F*dA=="), None);
    }
}
