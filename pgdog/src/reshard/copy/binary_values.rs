//! Where the values sit inside binary COPY data: a tuple's fields (a 16-bit count, then each
//! field's 32-bit length and bytes) and an array's elements (dimensions, null flag, element
//! type, each dimension's length and lower bound, then each element's length and bytes). The
//! walk is lenient: a missing length ends it and a length past the end is cut there (the
//! router rejects malformed tuples first; what slips through makes digests differ loudly).
//! It holds no borrow, so a caller may change the bytes of each value as it goes.

use std::ops::Range;

/// PostgreSQL's most array dimensions (`MAXDIM`).
const MAX_DIMENSIONS: usize = 6;

/// A walk over consecutive length-prefixed values.
#[derive(Debug, Clone)]
pub struct Values {
    pos: usize,
    left: usize,
}

impl Values {
    /// `count` values starting at byte `start`.
    pub fn at(start: usize, count: usize) -> Values {
        Values {
            pos: start,
            left: count,
        }
    }

    /// The fields of a binary COPY tuple.
    pub fn of_tuple(tuple: &[u8]) -> Values {
        let count = read_i16(tuple, 0).max(0) as usize;
        Values::at(2, count)
    }

    /// The elements of a binary array, every dimension's in order.
    pub fn of_array(array: &[u8]) -> Values {
        let dimensions = (read_i32(array, 0).unwrap_or(0).max(0) as usize).min(MAX_DIMENSIONS);
        let count = (0..dimensions).fold(usize::from(dimensions > 0), |count, d| {
            let size = read_i32(array, 12 + 8 * d).unwrap_or(0).max(0) as usize;
            count.saturating_mul(size)
        });
        Values::at(12 + 8 * dimensions, count)
    }

    /// Where the next value of `bytes` is: `Some(None)` for a NULL, `None` once the values
    /// (or the bytes) end.
    pub fn next(&mut self, bytes: &[u8]) -> Option<Option<Range<usize>>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let len = read_i32(bytes, self.pos)?;
        self.pos += 4;
        if len < 0 {
            return Some(None);
        }
        let end = self.pos.saturating_add(len as usize).min(bytes.len());
        let value = self.pos..end;
        self.pos = end;
        Some(Some(value))
    }
}

/// The big-endian 32-bit integer at `at`, when the bytes hold it.
pub fn read_i32(bytes: &[u8], at: usize) -> Option<i32> {
    let word = bytes.get(at..at.checked_add(4)?)?;
    Some(i32::from_be_bytes([word[0], word[1], word[2], word[3]]))
}

fn read_i16(bytes: &[u8], at: usize) -> i16 {
    bytes
        .get(at..at + 2)
        .map_or(0, |b| i16::from_be_bytes([b[0], b[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(mut values: Values, bytes: &[u8]) -> Vec<Option<Range<usize>>> {
        std::iter::from_fn(|| values.next(bytes)).collect()
    }

    #[test]
    fn walks_tuples_and_arrays() {
        // (1, NULL, "ab")
        let tuple = [
            0, 3, 0, 0, 0, 1, 7, 255, 255, 255, 255, 0, 0, 0, 2, b'a', b'b',
        ];
        assert_eq!(
            all(Values::of_tuple(&tuple), &tuple),
            vec![Some(6..7), None, Some(15..17)]
        );
        // {{1},{NULL}}: 2 dimensions of 2 and 1.
        let mut array = vec![0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 23];
        array.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]);
        array.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 1, 255, 255, 255, 255]);
        assert_eq!(
            all(Values::of_array(&array), &array),
            vec![Some(32..36), None]
        );
        let empty = [0u8; 12];
        assert!(all(Values::of_array(&empty), &empty).is_empty());
    }

    #[test]
    fn truncated_values_end_the_walk() {
        let tuple = [0, 2, 0, 0, 0, 9, 1, 2];
        assert_eq!(all(Values::of_tuple(&tuple), &tuple), vec![Some(6..8)]);
    }
}
