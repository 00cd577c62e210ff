//! Digests the shards compute themselves. Reading a shard's copy back over the network costs
//! as much as the copy's own `COPY TO` on the source; instead, when every copied column holds
//! only built-in types, each shard sums PostgreSQL's `hash_record_extended` over its rows in
//! one `SELECT`, and pgdog computes the same hash over the source's tuples in flight
//! ([`FieldHashes::row_hash`]): each column hashed by its type's own hash function where
//! [`ValueHash`] knows it, by its send function's output (the bytes binary COPY carries)
//! otherwise, combined as `hash_record_extended` combines its columns (`h = h * 31 + field`,
//! NULL as 0).
//!
//! User-defined types are left to the read-back ([`super::shape`]): their OIDs, which differ
//! between databases, sit inside array and composite values.

use crate::quote;
use crate::reshard::conn::{Conn, ConnError};

use super::binary_values::Values;
use super::digest::Digest;
use super::shape::TypeTree;
use super::tables::TableJob;
use super::value_hash::ValueHash;

/// How the shards hash one copied column.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ColumnHash {
    /// By its type's own hash function.
    Own(ValueHash),
    /// By the bytes this send function (in `pg_catalog`) makes of it.
    Sent(String),
}

/// Send-function output is hashed as bytes.
const SENT: ValueHash = ValueHash::Bytes;

impl ColumnHash {
    /// How pgdog hashes the column's binary values to match.
    fn value_hash(&self) -> &ValueHash {
        match self {
            ColumnHash::Own(hash) => hash,
            ColumnHash::Sent(_) => &SENT,
        }
    }

    /// The column `column` as the shards hash it in the digest query.
    fn expression(&self, column: &str) -> String {
        match self {
            ColumnHash::Own(hash) if hash.collatable() => {
                format!("{} COLLATE pg_catalog.\"C\"", quote::ident(column))
            }
            ColumnHash::Own(_) => quote::ident(column),
            ColumnHash::Sent(send) => {
                format!(
                    "pg_catalog.{}({})",
                    quote::ident(send),
                    quote::ident(column)
                )
            }
        }
    }
}

/// How each copied column of a table is hashed, on the shards and by pgdog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldHashes {
    columns: Vec<ColumnHash>,
}

impl FieldHashes {
    /// The hashes of columns of the types `types`, the columns at positions `widen` being
    /// bigint on the shards; `None` when a column holds a user-defined type anywhere inside
    /// it, or a type whose hash is unknown and that has no built-in send function.
    pub fn of_columns(types: &[TypeTree], widen: &[usize]) -> Option<FieldHashes> {
        if types.is_empty() {
            return None;
        }
        let columns = types
            .iter()
            .enumerate()
            .map(|(position, tree)| {
                if widen.contains(&position) {
                    return Some(ColumnHash::Own(ValueHash::Int8));
                }
                if !tree.built_in() {
                    return None;
                }
                if let Some(hash) = ValueHash::of_type(tree) {
                    return Some(ColumnHash::Own(hash));
                }
                tree.send.clone().map(ColumnHash::Sent)
            })
            .collect::<Option<Vec<ColumnHash>>>()?;
        Some(FieldHashes { columns })
    }

    /// The query a shard answers with the row count and the digest (a numeric sum) of `job`'s
    /// table.
    pub fn digest_sql(&self, job: &TableJob) -> String {
        let fields: Vec<String> = self
            .columns
            .iter()
            .zip(&job.columns)
            .map(|(hash, column)| hash.expression(column))
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

    /// PostgreSQL's `hash_record_extended(ROW(...), 0)` of a binary COPY tuple (field count,
    /// then each field's length and bytes) as the shards compute it. Malformed tuples hash
    /// what they have (the router rejects them before).
    pub fn row_hash(&self, tuple: &[u8]) -> u64 {
        let mut fields = Values::of_tuple(tuple);
        let mut hash = 0u64;
        let mut column = self.columns.iter();
        while let Some(range) = fields.next(tuple) {
            let value_hash = column.next().map_or(&SENT, ColumnHash::value_hash);
            let field = range.map_or(0, |range| value_hash.hash(&tuple[range]));
            hash = hash.wrapping_mul(31).wrapping_add(field);
        }
        hash
    }
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

    fn tuple(fields: &[Option<Vec<u8>>]) -> Vec<u8> {
        let mut tuple = (fields.len() as i16).to_be_bytes().to_vec();
        for field in fields {
            match field {
                Some(bytes) => {
                    tuple.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                    tuple.extend_from_slice(bytes);
                }
                None => tuple.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        tuple
    }

    /// `hash_record_extended(ROW('\x0102'::bytea, '\xdeadbeef00112233445566'::bytea,
    /// NULL::bytea), 0)` as PostgreSQL 15 computes it, from a binary COPY tuple.
    #[test]
    fn matches_postgres_for_sent_fields_with_a_null() {
        let hashes = FieldHashes {
            columns: vec![ColumnHash::Sent("byteasend".into()); 3],
        };
        let row = tuple(&[Some(hex("0102")), Some(hex("deadbeef00112233445566")), None]);
        assert_eq!(hashes.row_hash(&row) as i64, 4887440795954074139);
    }

    /// `hash_record_extended(ROW(7::int4, 'ab'::text COLLATE "C", NULL::numeric,
    /// '{"a": 1}'::jsonb, int4send(5)), 0)` as PostgreSQL 15 computes it.
    #[test]
    fn matches_postgres_for_own_and_sent_fields() {
        let hashes = FieldHashes {
            columns: vec![
                ColumnHash::Own(ValueHash::Int4),
                ColumnHash::Own(ValueHash::Text),
                ColumnHash::Own(ValueHash::Numeric),
                ColumnHash::Own(ValueHash::Jsonb),
                ColumnHash::Sent("int4send".into()),
            ],
        };
        let row = tuple(&[
            Some(hex("00000007")),
            Some(hex("6162")),
            None,
            Some(hex("017b2261223a20317d")),
            Some(hex("00000005")),
        ]);
        assert_eq!(hashes.row_hash(&row) as i64, 6006736540194443793);
        assert_eq!(
            hashes.columns[1].expression("Name"),
            "\"Name\" COLLATE pg_catalog.\"C\""
        );
        assert_eq!(hashes.columns[0].expression("id"), "\"id\"");
        assert_eq!(
            hashes.columns[4].expression("n"),
            "pg_catalog.\"int4send\"(\"n\")"
        );
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
