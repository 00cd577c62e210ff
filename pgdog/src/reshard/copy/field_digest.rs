//! Digests the shards compute themselves. Reading a shard's copy back over the network costs
//! as much as the copy's own `COPY TO` on the source; instead, when every copied column holds
//! only built-in types, each shard sums PostgreSQL's `hash_record_extended` over a row of the
//! columns' send-function outputs (the bytes binary COPY carries) in one `SELECT`, and pgdog
//! computes the same hash over the source's tuples in flight ([`fields_hash`]): PostgreSQL's
//! `hash_bytes_extended` (Bob Jenkins' lookup3, little-endian, seed 0) of each field, combined
//! as `hash_record_extended` combines its columns (`h = h * 31 + field`, NULL as 0).
//!
//! User-defined types are left to the read-back ([`super::shape`]): their OIDs, which differ
//! between databases, sit inside array and composite values.

use crate::quote;
use crate::reshard::conn::{Conn, ConnError};

use super::digest::Digest;
use super::shape::TypeTree;
use super::tables::TableJob;

/// The send function of each copied column, as the shards call it in the digest query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSends {
    sends: Vec<String>,
}

impl FieldSends {
    /// The send functions for columns of the types `types`, the columns at positions `widen`
    /// being bigint on the shards; `None` when a column holds a user-defined type anywhere
    /// inside it, or a type without a built-in send function.
    pub fn of_columns(types: &[TypeTree], widen: &[usize]) -> Option<FieldSends> {
        if types.is_empty() {
            return None;
        }
        let sends = types
            .iter()
            .enumerate()
            .map(|(position, tree)| {
                if widen.contains(&position) {
                    return Some("pg_catalog.int8send".to_string());
                }
                let send = tree.send.as_deref().filter(|_| tree.built_in())?;
                Some(format!("pg_catalog.{}", quote::ident(send)))
            })
            .collect::<Option<Vec<String>>>()?;
        Some(FieldSends { sends })
    }

    /// The query a shard answers with the row count and the digest (a numeric sum) of `job`'s
    /// table.
    pub fn digest_sql(&self, job: &TableJob) -> String {
        let fields: Vec<String> = self
            .sends
            .iter()
            .zip(&job.columns)
            .map(|(send, column)| format!("{send}({})", quote::ident(column)))
            .collect();
        format!(
            "SELECT count(*)::text, COALESCE(sum(pg_catalog.hash_record_extended(ROW({}), 0)), 0)::text \
             FROM ONLY {}",
            fields.join(", "),
            job.table.qualified()
        )
    }

    /// Row count and digest of `job`'s table on the shard `conn` talks to.
    pub async fn read(&self, conn: &mut Conn, job: &TableJob) -> Result<Digest, ConnError> {
        let rows = conn.query(&self.digest_sql(job)).await?;
        let rows_text = rows.get(0, 0).unwrap_or("");
        let sum_text = rows.get(0, 1).unwrap_or("");
        match (rows_text.parse::<u64>(), numeric_mod_2_64(sum_text)) {
            (Ok(rows), Some(sum)) => Ok(Digest { rows, sum }),
            _ => Err(ConnError::Lost {
                server: conn.addr().to_string(),
                message: format!(
                    "the digest query of {} returned {rows_text:?} and {sum_text:?}",
                    job.table.qualified()
                ),
            }),
        }
    }
}

/// PostgreSQL's `hash_record_extended(ROW(field, ...), 0)` of a binary COPY tuple's fields
/// (field count, then each field's length and bytes), each field hashed as `bytea` is.
/// Malformed tuples hash what they have (the router rejects them before).
pub fn fields_hash(tuple: &[u8]) -> u64 {
    let count = tuple
        .get(..2)
        .map_or(0, |b| i16::from_be_bytes([b[0], b[1]]).max(0) as usize);
    let mut pos = 2;
    let mut hash = 0u64;
    for _ in 0..count {
        let Some(len) = tuple.get(pos..pos + 4) else {
            break;
        };
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        pos += 4;
        let field = if len < 0 {
            0
        } else {
            let end = pos.saturating_add(len as usize).min(tuple.len());
            let field = hash_bytes_extended(&tuple[pos..end]);
            pos = end;
            field
        };
        hash = hash.wrapping_mul(31).wrapping_add(field);
    }
    hash
}

/// PostgreSQL's `hash_bytes_extended(bytes, len, 0)` as computed on little-endian machines:
/// lookup3 over 12-byte blocks of little-endian words, the last 0–11 bytes added the same way
/// (the third word shifted up one byte), then the final mix; `b` and `c` make the result.
pub fn hash_bytes_extended(bytes: &[u8]) -> u64 {
    // PostgreSQL takes the length as a 32-bit int: values are at most 1 GB.
    let start = 0x9e37_79b9u32
        .wrapping_add(bytes.len() as u32)
        .wrapping_add(3_923_095);
    let (mut a, mut b, mut c) = (start, start, start);
    let mut blocks = bytes.chunks_exact(12);
    for block in &mut blocks {
        a = a.wrapping_add(u32::from_le_bytes([block[0], block[1], block[2], block[3]]));
        b = b.wrapping_add(u32::from_le_bytes([block[4], block[5], block[6], block[7]]));
        c = c.wrapping_add(u32::from_le_bytes([
            block[8], block[9], block[10], block[11],
        ]));
        mix(&mut a, &mut b, &mut c);
    }
    let rest = blocks.remainder();
    let mut tail = [0u8; 12];
    tail[..rest.len()].copy_from_slice(rest);
    a = a.wrapping_add(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    b = b.wrapping_add(u32::from_le_bytes([tail[4], tail[5], tail[6], tail[7]]));
    c = c.wrapping_add(u32::from_le_bytes([tail[8], tail[9], tail[10], 0]) << 8);
    final_mix(&mut a, &mut b, &mut c);
    (u64::from(b) << 32) | u64::from(c)
}

/// lookup3's mix of a block into the state.
#[inline(always)]
fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c) ^ c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a) ^ a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b) ^ b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c) ^ c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a) ^ a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b) ^ b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

/// lookup3's final mix of the state.
#[inline(always)]
fn final_mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(14));
    *a = (*a ^ *c).wrapping_sub(c.rotate_left(11));
    *b = (*b ^ *a).wrapping_sub(a.rotate_left(25));
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(16));
    *a = (*a ^ *c).wrapping_sub(c.rotate_left(4));
    *b = (*b ^ *a).wrapping_sub(a.rotate_left(14));
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(24));
}

/// A decimal integer (a `numeric` sum, possibly negative) modulo 2^64: the wrapping sum of the
/// same `bigint` values. `None` when `text` is not an integer.
fn numeric_mod_2_64(text: &str) -> Option<u64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value = digits.bytes().fold(0u64, |acc, digit| {
        acc.wrapping_mul(10).wrapping_add(u64::from(digit - b'0'))
    });
    Some(if negative {
        value.wrapping_neg()
    } else {
        value
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len() / 2)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap_or(0))
            .collect()
    }

    /// `hash_record_extended(ROW(x::bytea), 0)` as PostgreSQL 15 computes it.
    #[test]
    fn matches_postgres_for_single_fields() {
        for (bytes, expected) in [
            ("", -6939563903564495251i64),
            ("c4", -7564347649624687629),
            ("c81e", 7238654129778668841),
            ("eccbc8", -472633781456346579),
            ("c51ce410c124a10e0db5e4b97f", -5346854371312795785),
            (
                "34173cb38f07f89ddbebc2ac9128303f6f3ef77ac0e3619e98159e9b6feb",
                -6674467605348075110,
            ),
            (
                "67c6a1e7ce56d3d6fa748ab6d9af3fd76faa8040da20ef399b63a72d0e4ab5758ebda540cbcc4d7336496819a46a1b",
                -6224738070756419059,
            ),
        ] {
            assert_eq!(hash_bytes_extended(&hex(bytes)) as i64, expected, "{bytes}");
        }
    }

    /// `hash_record_extended(ROW('\x0102'::bytea, '\xdeadbeef00112233445566'::bytea,
    /// NULL::bytea), 0)` as PostgreSQL 15 computes it, from a binary COPY tuple.
    #[test]
    fn matches_postgres_for_a_record_with_a_null() {
        let mut tuple = 3i16.to_be_bytes().to_vec();
        for field in [hex("0102"), hex("deadbeef00112233445566")] {
            tuple.extend_from_slice(&(field.len() as i32).to_be_bytes());
            tuple.extend_from_slice(&field);
        }
        tuple.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(fields_hash(&tuple) as i64, 4887440795954074139);
    }

    #[test]
    fn numeric_sums_wrap_like_bigint_sums() {
        assert_eq!(numeric_mod_2_64("0"), Some(0));
        assert_eq!(numeric_mod_2_64("-1"), Some(u64::MAX));
        assert_eq!(numeric_mod_2_64("18446744073709551617"), Some(1));
        let values = [i64::MAX, i64::MAX, -5, i64::MIN];
        let exact: i128 = values.iter().map(|v| i128::from(*v)).sum();
        let wrapped = values
            .iter()
            .fold(0u64, |acc, v| acc.wrapping_add(*v as u64));
        assert_eq!(numeric_mod_2_64(&exact.to_string()), Some(wrapped));
        assert_eq!(numeric_mod_2_64("1.5"), None);
        assert_eq!(numeric_mod_2_64(""), None);
    }
}
