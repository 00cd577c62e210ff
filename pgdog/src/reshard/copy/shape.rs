//! Binary values that carry type OIDs inside them: arrays (their element type) and composite
//! values (each field's type). Source and destination give user-defined types different OIDs,
//! so the bytes pgdog sends and the bytes a shard gives back differ only there. Digests hash
//! tuples with those OIDs zeroed, walking each column's shape (arrays of composites of arrays
//! ...), so verification compares the values, not the catalogs.

use std::sync::Arc;

use super::binary_values::{read_i32, Values};
use super::digest::hash64;
use crate::reshard::conn::{Conn, ConnError};

/// How a column's binary value is laid out, as far as embedded OIDs go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// No embedded OIDs.
    Scalar,
    /// An array of this element shape.
    Array(Box<Shape>),
    /// A composite value with these field shapes.
    Record(Vec<Shape>),
}

/// The shapes of a tuple's columns; `None` from [`TupleShape::of_types`] when every column
/// is a scalar (hash the bytes as they are).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TupleShape {
    columns: Vec<Shape>,
}

/// Nesting followed at most (deeper values keep their OIDs; verification then fails loudly).
const MAX_DEPTH: usize = 8;

impl TupleShape {
    /// The shapes of the copied columns' types, or `None` when none has embedded OIDs.
    pub fn of_types(types: &[TypeTree]) -> Option<Arc<TupleShape>> {
        let columns: Vec<Shape> = types.iter().map(TypeTree::shape).collect();
        if columns.iter().all(|c| *c == Shape::Scalar) {
            return None;
        }
        Some(Arc::new(TupleShape { columns }))
    }

    /// The hash of `tuple` (field count and fields) with embedded OIDs zeroed; `scratch` is
    /// reused between calls.
    pub fn hash(&self, tuple: &[u8], scratch: &mut Vec<u8>) -> u64 {
        scratch.clear();
        scratch.extend_from_slice(tuple);
        let mut fields = Values::at(2, self.columns.len());
        for shape in &self.columns {
            let Some(field) = fields.next(scratch) else {
                break;
            };
            if let Some(range) = field {
                zero_oids(shape, &mut scratch[range], 0);
            }
        }
        hash64(scratch)
    }
}

/// The hash of a tuple, normalized when it has a shape.
pub fn tuple_hash(shape: Option<&TupleShape>, tuple: &[u8], scratch: &mut Vec<u8>) -> u64 {
    match shape {
        Some(shape) => shape.hash(tuple, scratch),
        None => hash64(tuple),
    }
}

fn zero(bytes: &mut [u8], at: usize) {
    if let Some(word) = bytes.get_mut(at..at + 4) {
        word.fill(0);
    }
}

/// Zeroes the OIDs inside one value of `shape`.
fn zero_oids(shape: &Shape, value: &mut [u8], depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match shape {
        Shape::Scalar => {}
        Shape::Array(element) => {
            // Dimension count and null flag both there, else nothing to zero.
            if read_i32(value, 4).is_none() {
                return;
            }
            zero(value, 8);
            let mut elements = Values::of_array(value);
            while let Some(field) = elements.next(value) {
                if let Some(range) = field {
                    zero_oids(element, &mut value[range], depth + 1);
                }
            }
        }
        Shape::Record(fields) => {
            let Some(count) = read_i32(value, 0) else {
                return;
            };
            let mut pos = 4;
            for i in 0..count.max(0) as usize {
                zero(value, pos);
                let Some(len) = read_i32(value, pos + 4) else {
                    return;
                };
                pos += 8;
                if len < 0 {
                    continue;
                }
                let end = pos.saturating_add(len as usize).min(value.len());
                let field = fields.get(i).unwrap_or(&Shape::Scalar);
                zero_oids(field, &mut value[pos..end], depth + 1);
                pos = end;
            }
        }
    }
}

/// A column's type and the types inside its binary values (a domain's base type, an array's
/// element type, a composite type's attributes), as the catalog describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeTree {
    /// The type.
    pub oid: u32,
    /// What its values hold.
    pub inner: Inner,
    /// Its send function when that is a built-in one (in `pg_catalog`).
    pub send: Option<String>,
}

/// What the values of a [`TypeTree`]'s type are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inner {
    /// Nothing typed: a base type.
    Nothing,
    /// A domain over this type.
    Domain(Box<TypeTree>),
    /// An array of this element type.
    Array(Box<TypeTree>),
    /// A composite type with these live attributes.
    Record(Vec<TypeTree>),
    /// Nested deeper than followed.
    TooDeep,
}

/// The first OID a database gives to objects it creates: below it, the built-in types, the
/// same in every database.
const FIRST_NORMAL_OID: u32 = 16384;

impl TypeTree {
    /// Type `oid` read from the catalog of the server `conn` talks to.
    pub async fn read(conn: &mut Conn, oid: u32) -> Result<TypeTree, ConnError> {
        read_tree(conn, oid, 0).await
    }

    /// The layout of its values, as far as embedded OIDs go.
    fn shape(&self) -> Shape {
        match &self.inner {
            Inner::Domain(base) => base.shape(),
            Inner::Array(element) => Shape::Array(Box::new(element.shape())),
            Inner::Record(fields) => Shape::Record(fields.iter().map(TypeTree::shape).collect()),
            Inner::Nothing | Inner::TooDeep => Shape::Scalar,
        }
    }

    /// Whether it and every type inside its values are built in (so its binary values are
    /// the same bytes in every database).
    pub fn built_in(&self) -> bool {
        self.oid != 0
            && self.oid < FIRST_NORMAL_OID
            && match &self.inner {
                Inner::Nothing => true,
                Inner::Domain(inner) | Inner::Array(inner) => inner.built_in(),
                Inner::Record(fields) => fields.iter().all(TypeTree::built_in),
                Inner::TooDeep => false,
            }
    }
}

fn read_tree<'a>(
    conn: &'a mut Conn,
    oid: u32,
    depth: usize,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<TypeTree, ConnError>> + Send + 'a>> {
    Box::pin(async move {
        if depth > MAX_DEPTH {
            return Ok(TypeTree {
                oid,
                inner: Inner::TooDeep,
                send: None,
            });
        }
        let rows = conn
            .query(&format!(
                "SELECT t.typtype, t.typbasetype, t.typelem, t.typlen, t.typcategory, t.typrelid, \
                 (SELECT p.proname FROM pg_catalog.pg_proc p \
                  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
                  WHERE p.oid = t.typsend AND n.nspname = 'pg_catalog') \
                 FROM pg_catalog.pg_type t WHERE t.oid = {oid}"
            ))
            .await?;
        let text = |i: usize| rows.get(0, i).unwrap_or("").to_string();
        let number = |i: usize| text(i).parse::<u32>().unwrap_or(0);
        let send = rows.get(0, 6).map(str::to_string);
        let inner = match (text(0).as_str(), text(4).as_str()) {
            ("d", _) => Inner::Domain(Box::new(read_tree(conn, number(1), depth + 1).await?)),
            (_, "A") if number(2) != 0 && text(3) == "-1" => {
                Inner::Array(Box::new(read_tree(conn, number(2), depth + 1).await?))
            }
            ("c", _) => {
                let attributes = conn
                    .query(&format!(
                        "SELECT atttypid FROM pg_catalog.pg_attribute WHERE attrelid = {} \
                         AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                        number(5)
                    ))
                    .await?;
                let mut fields = Vec::new();
                for row in &attributes.rows {
                    let oid = row
                        .first()
                        .cloned()
                        .flatten()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    fields.push(read_tree(conn, oid, depth + 1).await?);
                }
                Inner::Record(fields)
            }
            _ => Inner::Nothing,
        };
        Ok(TypeTree { oid, inner, send })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(bytes: &[u8]) -> Vec<u8> {
        let mut out = (bytes.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(bytes);
        out
    }

    /// A one-dimensional array of `elements` with element type `oid`.
    fn array(oid: u32, elements: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&1i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&oid.to_be_bytes());
        out.extend_from_slice(&(elements.len() as i32).to_be_bytes());
        out.extend_from_slice(&1i32.to_be_bytes());
        for element in elements {
            out.extend_from_slice(&field(element));
        }
        out
    }

    /// A composite value of (oid, bytes) fields.
    fn record(fields: &[(u32, Vec<u8>)]) -> Vec<u8> {
        let mut out = (fields.len() as i32).to_be_bytes().to_vec();
        for (oid, bytes) in fields {
            out.extend_from_slice(&oid.to_be_bytes());
            out.extend_from_slice(&field(bytes));
        }
        out
    }

    fn tuple(fields: &[Vec<u8>]) -> Vec<u8> {
        let mut out = (fields.len() as i16).to_be_bytes().to_vec();
        for f in fields {
            out.extend_from_slice(&field(f));
        }
        out
    }

    /// id, mood[], place (mood, int), place[] as the source and a shard would encode them.
    fn labels(mood: u32, place: u32, value: &[u8]) -> Vec<u8> {
        let a_place = record(&[(mood, b"a".to_vec()), (23, value.to_vec())]);
        tuple(&[
            7i64.to_be_bytes().to_vec(),
            array(mood, &[b"a".to_vec(), b"b".to_vec()]),
            a_place.clone(),
            array(place, &[a_place.clone(), a_place]),
        ])
    }

    #[test]
    fn embedded_oids_do_not_change_the_hash_but_values_do() {
        let shape = TupleShape {
            columns: vec![
                Shape::Scalar,
                Shape::Array(Box::new(Shape::Scalar)),
                Shape::Record(vec![Shape::Scalar, Shape::Scalar]),
                Shape::Array(Box::new(Shape::Record(vec![Shape::Scalar, Shape::Scalar]))),
            ],
        };
        let mut scratch = Vec::new();
        let source = labels(16648, 16657, &5i32.to_be_bytes());
        let shard = labels(16419, 16427, &5i32.to_be_bytes());
        assert_ne!(source, shard);
        assert_eq!(
            shape.hash(&source, &mut scratch),
            shape.hash(&shard, &mut scratch)
        );
        let other = labels(16419, 16427, &6i32.to_be_bytes());
        assert_ne!(
            shape.hash(&source, &mut scratch),
            shape.hash(&other, &mut scratch)
        );
    }
}
