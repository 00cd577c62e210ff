//! The hash functions PostgreSQL's `PARTITION BY HASH` applies to a key, reimplemented so that
//! pgdog computes bit for bit the same 64-bit values.
//!
//! PostgreSQL hashes each partition key column with the column type's *extended* (64-bit,
//! seeded) hash support function, seeded with [`HASH_PARTITION_SEED`], and folds the column
//! hashes together with [`hash_combine64`], starting from 0. The remainder of that value divided
//! by the modulus picks the partition.
//!
//! All per-type hashes end in Bob Jenkins' lookup3 hash (2006), in the variant PostgreSQL uses:
//! three 32-bit lanes `a`, `b`, `c` start at `0x9e3779b9 + length + 3923095`; a non-zero seed is
//! mixed in first as if it were an extra 12-byte block (`a += seed >> 32`, `b += seed as u32`,
//! `mix`); the data is consumed in 12-byte little-endian blocks, each followed by `mix`; the
//! 0..=11 remaining bytes are added to `a`, `b` and `c` (the bytes meant for `c` start at bit 8,
//! its lowest byte is left for the length in the original design); then `final`. The 64-bit
//! result is `b` in the high half and `c` in the low half.
//!
//! The byte order is little-endian: PostgreSQL on a big-endian server reads the blocks the other
//! way round and so computes other hashes. Every platform pgdog targets (and that PostgreSQL is
//! deployed on in practice) is little-endian; the result here does not depend on the platform
//! pgdog itself runs on.

/// The seed PostgreSQL passes to the extended hash functions of hash-partition keys
/// (`HASH_PARTITION_SEED` in PostgreSQL's `partition.h`).
pub const HASH_PARTITION_SEED: u64 = 0x7A5B_2236_7996_DCFD;

/// The constant `hash_combine64` adds: 64 bits of random data.
const COMBINE_CONSTANT: u64 = 0x49a0_f4dd_15e5_a8e3;

/// The golden-ratio constant lookup3 starts its state from.
const GOLDEN_RATIO: u32 = 0x9e37_79b9;

/// PostgreSQL's extra offset to the initial state.
const INITIAL_OFFSET: u32 = 3_923_095;

/// Combines the hash `b` of the next key column into the running hash `a` of the columns
/// before it, as PostgreSQL's `hash_combine64` does (wrapping 64-bit arithmetic). A
/// partition key's hash starts from `a = 0`.
pub fn hash_combine64(a: u64, b: u64) -> u64 {
    a ^ b
        .wrapping_add(COMBINE_CONSTANT)
        .wrapping_add(a << 54)
        .wrapping_add(a >> 7)
}

/// The lookup3 state: three 32-bit lanes.
#[derive(Clone, Copy)]
struct State {
    a: u32,
    b: u32,
    c: u32,
}

impl State {
    /// The initial state for a key of `len` bytes, perturbed by `seed` unless it is 0.
    fn new(len: usize, seed: u64) -> State {
        // The length enters as a 32-bit value (PostgreSQL's keys are at most 1 GB); wrapping
        // keeps longer inputs well defined.
        let init = GOLDEN_RATIO
            .wrapping_add(len as u32)
            .wrapping_add(INITIAL_OFFSET);
        let mut state = State {
            a: init,
            b: init,
            c: init,
        };
        if seed != 0 {
            // The seed acts as one more 12-byte block, the last 4 bytes being zero.
            state.a = state.a.wrapping_add((seed >> 32) as u32);
            state.b = state.b.wrapping_add(seed as u32);
            state.mix();
        }
        state
    }

    /// lookup3's reversible `mix` of the three lanes, run after each full block.
    #[inline(always)]
    fn mix(&mut self) {
        let State { a, b, c } = self;
        *a = a.wrapping_sub(*c);
        *a ^= c.rotate_left(4);
        *c = c.wrapping_add(*b);

        *b = b.wrapping_sub(*a);
        *b ^= a.rotate_left(6);
        *a = a.wrapping_add(*c);

        *c = c.wrapping_sub(*b);
        *c ^= b.rotate_left(8);
        *b = b.wrapping_add(*a);

        *a = a.wrapping_sub(*c);
        *a ^= c.rotate_left(16);
        *c = c.wrapping_add(*b);

        *b = b.wrapping_sub(*a);
        *b ^= a.rotate_left(19);
        *a = a.wrapping_add(*c);

        *c = c.wrapping_sub(*b);
        *c ^= b.rotate_left(4);
        *b = b.wrapping_add(*a);
    }

    /// lookup3's `final` avalanche of the three lanes, run once at the end.
    #[inline(always)]
    fn finish(&mut self) {
        let State { a, b, c } = self;
        *c ^= *b;
        *c = c.wrapping_sub(b.rotate_left(14));

        *a ^= *c;
        *a = a.wrapping_sub(c.rotate_left(11));

        *b ^= *a;
        *b = b.wrapping_sub(a.rotate_left(25));

        *c ^= *b;
        *c = c.wrapping_sub(b.rotate_left(16));

        *a ^= *c;
        *a = a.wrapping_sub(c.rotate_left(4));

        *b ^= *a;
        *b = b.wrapping_sub(a.rotate_left(14));

        *c ^= *b;
        *c = c.wrapping_sub(b.rotate_left(24));
    }

    /// The 64-bit result: `b` high, `c` low.
    fn result(self) -> u64 {
        (u64::from(self.b) << 32) | u64::from(self.c)
    }
}

/// Four bytes as a little-endian 32-bit word.
#[inline(always)]
fn le_word(bytes: &[u8; 12], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// The first (up to) four bytes of `bytes` as a little-endian word, missing bytes zero.
#[inline(always)]
fn partial_le_word(bytes: &[u8]) -> u32 {
    match *bytes {
        [] => 0,
        [b0] => u32::from(b0),
        [b0, b1] => u32::from(u16::from_le_bytes([b0, b1])),
        [b0, b1, b2] => u32::from(u16::from_le_bytes([b0, b1])) | (u32::from(b2) << 16),
        [b0, b1, b2, b3, ..] => u32::from_le_bytes([b0, b1, b2, b3]),
    }
}

/// PostgreSQL's `hash_bytes_extended`: the seeded 64-bit lookup3 hash of `data`. `seed` 0 means
/// no seed. This is what `hashtextextended` (for deterministic collations), `hashvarlenaextended`
/// and `uuid_hash_extended` compute.
pub fn hash_bytes_extended(data: &[u8], seed: u64) -> u64 {
    let mut state = State::new(data.len(), seed);

    let mut blocks = data.chunks_exact(12);
    for block in &mut blocks {
        let block: &[u8; 12] = block.try_into().unwrap_or(&[0; 12]);
        state.a = state.a.wrapping_add(le_word(block, 0));
        state.b = state.b.wrapping_add(le_word(block, 4));
        state.c = state.c.wrapping_add(le_word(block, 8));
        state.mix();
    }

    // 0..=11 bytes are left: bytes 0-3 go to `a`, 4-7 to `b`, and 8-10 to `c` shifted up by
    // one byte. A tail shorter than a lane contributes only its bytes.
    let tail = blocks.remainder();
    let lane = |from: usize| tail.get(from..).map_or(0, partial_le_word);
    state.a = state.a.wrapping_add(lane(0));
    state.b = state.b.wrapping_add(lane(4));
    state.c = state.c.wrapping_add(lane(8) << 8);

    state.finish();
    state.result()
}

/// PostgreSQL's `hash_bytes_uint32_extended`: the seeded 64-bit hash of one 32-bit value, equal
/// to [`hash_bytes_extended`] of its four little-endian bytes. `hashint4extended` and
/// `hashint2extended` are this of the (sign-extended) value.
pub fn hash_uint32_extended(value: u32, seed: u64) -> u64 {
    let mut state = State::new(4, seed);
    state.a = state.a.wrapping_add(value);
    state.finish();
    state.result()
}

/// PostgreSQL's `hashint8extended`: the 64-bit value folded to 32 bits (low half XOR the high
/// half, or XOR its complement for negative values) and hashed with [`hash_uint32_extended`].
/// The folding makes every value that fits in an `int4` hash as that `int4` does, so `int2`,
/// `int4` and `int8` keys with the same value get the same hash.
pub fn hash_int8_extended(value: i64, seed: u64) -> u64 {
    let low = value as u32;
    let high = (value >> 32) as u32;
    let folded = if value >= 0 { low ^ high } else { low ^ !high };
    hash_uint32_extended(folded, seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `hash_record_extended(ROW(x::bytea), 0)` (`hash_bytes_extended` of the bytes, seed 0) as
    /// PostgreSQL 15 computes it, for every tail length class.
    #[test]
    fn matches_postgres_without_a_seed() {
        let hex = |text: &str| -> Vec<u8> {
            (0..text.len() / 2)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap_or(0))
                .collect()
        };
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
                "67c6a1e7ce56d3d6fa748ab6d9af3fd76faa8040da20ef399b63a72d0e4ab5758ebda540cbcc4d73\
                 36496819a46a1b",
                -6224738070756419059,
            ),
        ] {
            assert_eq!(
                hash_bytes_extended(&hex(bytes), 0) as i64,
                expected,
                "{bytes}"
            );
        }
    }

    #[test]
    fn uint32_variant_equals_bytes_of_the_value() {
        for value in [0u32, 1, 42, 0xdead_beef, u32::MAX] {
            for seed in [0, 1, HASH_PARTITION_SEED, u64::MAX] {
                assert_eq!(
                    hash_uint32_extended(value, seed),
                    hash_bytes_extended(&value.to_le_bytes(), seed),
                    "value {value:#x} seed {seed:#x}"
                );
            }
        }
    }

    #[test]
    fn int8_folds_to_int4() {
        for value in [0i64, 1, -1, 42, -42, i32::MIN as i64, i32::MAX as i64] {
            assert_eq!(
                hash_int8_extended(value, HASH_PARTITION_SEED),
                hash_uint32_extended(value as i32 as u32, HASH_PARTITION_SEED)
            );
        }
    }

    #[test]
    fn every_tail_length_is_hashed_differently() {
        // Each extra byte (even a zero byte) changes the hash, for every tail length.
        let data = [0u8; 40];
        let hashes: Vec<u64> = (0..=data.len())
            .map(|len| hash_bytes_extended(&data[..len], HASH_PARTITION_SEED))
            .collect();
        for (i, a) in hashes.iter().enumerate() {
            for b in &hashes[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn combine_from_zero() {
        assert_eq!(hash_combine64(0, 0), COMBINE_CONSTANT);
        assert_eq!(
            hash_combine64(0, u64::MAX),
            COMBINE_CONSTANT.wrapping_sub(1)
        );
    }
}
