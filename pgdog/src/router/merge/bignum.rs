//! Unsigned integers of any size, stored as base-10^9 limbs: exactly what `numeric` sums and
//! averages need (add, subtract, compare, scale by powers of ten, divide by a row count) and
//! cheap conversion to and from decimal digits.

use std::cmp::Ordering;

/// One limb holds nine decimal digits.
const BASE: u64 = 1_000_000_000;
/// Decimal digits per limb.
const LIMB_DIGITS: u32 = 9;

/// A non-negative integer; limbs are least significant first with no zero limb at the top
/// (zero has no limbs), so derived equality is numeric equality.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BigUint {
    limbs: Vec<u32>,
}

impl BigUint {
    /// Zero.
    pub fn zero() -> BigUint {
        BigUint::default()
    }

    /// The value of `v`.
    pub fn from_u128(mut v: u128) -> BigUint {
        let mut limbs = Vec::new();
        while v > 0 {
            limbs.push((v % u128::from(BASE)) as u32);
            v /= u128::from(BASE);
        }
        BigUint { limbs }
    }

    /// Whether this is zero.
    pub fn is_zero(&self) -> bool {
        self.limbs.is_empty()
    }

    /// Parses ASCII decimal digits (an empty string is zero); `None` on any other byte.
    pub fn from_digits(digits: &[u8]) -> Option<BigUint> {
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut limbs = Vec::with_capacity(digits.len() / LIMB_DIGITS as usize + 1);
        let mut end = digits.len();
        while end > 0 {
            let start = end.saturating_sub(LIMB_DIGITS as usize);
            let limb = digits[start..end]
                .iter()
                .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
            limbs.push(limb);
            end = start;
        }
        let mut out = BigUint { limbs };
        out.trim();
        Some(out)
    }

    /// The decimal digits, without leading zeros ("0" for zero).
    pub fn to_digits(&self) -> String {
        let Some((top, rest)) = self.limbs.split_last() else {
            return "0".to_string();
        };
        let mut out = String::with_capacity(self.limbs.len() * LIMB_DIGITS as usize);
        out.push_str(&top.to_string());
        for limb in rest.iter().rev() {
            out.push_str(&format!("{limb:09}"));
        }
        out
    }

    /// Multiplies in place by `m` (at most 10^9).
    pub fn mul_small(&mut self, m: u32) {
        let mut carry: u64 = 0;
        for limb in &mut self.limbs {
            let v = u64::from(*limb) * u64::from(m) + carry;
            *limb = (v % BASE) as u32;
            carry = v / BASE;
        }
        while carry > 0 {
            self.limbs.push((carry % BASE) as u32);
            carry /= BASE;
        }
        self.trim();
    }

    /// Adds `a` (below 10^9) in place.
    pub fn add_small(&mut self, a: u32) {
        let mut carry = u64::from(a);
        for limb in &mut self.limbs {
            if carry == 0 {
                break;
            }
            let v = u64::from(*limb) + carry;
            *limb = (v % BASE) as u32;
            carry = v / BASE;
        }
        if carry > 0 {
            self.limbs.push(carry as u32);
        }
    }

    /// Multiplies in place by 10^k.
    pub fn mul_pow10(&mut self, k: u32) {
        if self.is_zero() {
            return;
        }
        let whole = (k / LIMB_DIGITS) as usize;
        if whole > 0 {
            self.limbs.splice(0..0, std::iter::repeat_n(0, whole));
        }
        self.mul_small(10u32.pow(k % LIMB_DIGITS));
    }

    /// Divides in place by 10^k, truncating.
    pub fn div_pow10(&mut self, k: u32) {
        let whole = ((k / LIMB_DIGITS) as usize).min(self.limbs.len());
        self.limbs.drain(..whole);
        let (quotient, _) = self.divrem(10u64.pow(k % LIMB_DIGITS));
        *self = quotient;
    }

    /// Quotient and remainder of the division by `d` (not zero).
    pub fn divrem(&self, d: u64) -> (BigUint, u64) {
        let d128 = u128::from(d.max(1));
        let mut limbs = vec![0u32; self.limbs.len()];
        let mut rem: u128 = 0;
        for (i, limb) in self.limbs.iter().enumerate().rev() {
            let cur = rem * u128::from(BASE) + u128::from(*limb);
            // cur < d * BASE, so the quotient digit is below BASE.
            limbs[i] = (cur / d128) as u32;
            rem = cur % d128;
        }
        let mut quotient = BigUint { limbs };
        quotient.trim();
        (quotient, rem as u64)
    }

    /// The sum.
    pub fn add(&self, other: &BigUint) -> BigUint {
        let len = self.limbs.len().max(other.limbs.len());
        let mut limbs = Vec::with_capacity(len + 1);
        let mut carry = 0u64;
        for i in 0..len {
            let a = u64::from(self.limbs.get(i).copied().unwrap_or(0));
            let b = u64::from(other.limbs.get(i).copied().unwrap_or(0));
            let v = a + b + carry;
            limbs.push((v % BASE) as u32);
            carry = v / BASE;
        }
        if carry > 0 {
            limbs.push(carry as u32);
        }
        BigUint { limbs }
    }

    /// `self - other`; `other` must not be larger (the result saturates at zero otherwise).
    pub fn sub(&self, other: &BigUint) -> BigUint {
        if self.cmp(other) != Ordering::Greater {
            return BigUint::zero();
        }
        let mut limbs = Vec::with_capacity(self.limbs.len());
        let mut borrow = 0i64;
        for (i, limb) in self.limbs.iter().enumerate() {
            let b = i64::from(other.limbs.get(i).copied().unwrap_or(0));
            let mut v = i64::from(*limb) - b - borrow;
            borrow = 0;
            if v < 0 {
                v += BASE as i64;
                borrow = 1;
            }
            limbs.push(v as u32);
        }
        let mut out = BigUint { limbs };
        out.trim();
        out
    }

    fn trim(&mut self) {
        while self.limbs.last() == Some(&0) {
            self.limbs.pop();
        }
    }
}

impl Ord for BigUint {
    fn cmp(&self, other: &BigUint) -> Ordering {
        self.limbs
            .len()
            .cmp(&other.limbs.len())
            .then_with(|| self.limbs.iter().rev().cmp(other.limbs.iter().rev()))
    }
}

impl PartialOrd for BigUint {
    fn partial_cmp(&self, other: &BigUint) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big(s: &str) -> BigUint {
        BigUint::from_digits(s.as_bytes()).unwrap()
    }

    #[test]
    fn digits_round_trip() {
        for s in [
            "0",
            "1",
            "999999999",
            "1000000000",
            "123456789012345678901234567890",
        ] {
            assert_eq!(big(s).to_digits(), s);
        }
        assert_eq!(big("000042").to_digits(), "42");
        assert_eq!(big("").to_digits(), "0");
        assert!(BigUint::from_digits(b"12a").is_none());
        assert_eq!(
            BigUint::from_u128(u128::MAX).to_digits(),
            u128::MAX.to_string()
        );
    }

    #[test]
    fn arithmetic() {
        let a = big("999999999999999999");
        let b = big("1");
        assert_eq!(a.add(&b).to_digits(), "1000000000000000000");
        assert_eq!(a.add(&b).sub(&b), a);
        assert_eq!(b.sub(&a), BigUint::zero());
        assert_eq!(big("1000000000000000000").sub(&a).to_digits(), "1");
        let mut c = big("123");
        c.mul_pow10(20);
        assert_eq!(c.to_digits(), "12300000000000000000000");
        c.div_pow10(19);
        assert_eq!(c.to_digits(), "1230");
        c.div_pow10(40);
        assert!(c.is_zero());
        let (q, r) = big("100000000000000000000000000001").divrem(7);
        assert_eq!(q.to_digits(), "14285714285714285714285714285");
        assert_eq!(r, 6);
        let (q, r) = big("18446744073709551615").divrem(u64::MAX);
        assert_eq!((q.to_digits().as_str(), r), ("1", 0));
        let mut d = big("5");
        d.add_small(999_999_999);
        assert_eq!(d.to_digits(), "1000000004");
        assert!(big("10") > big("9"));
        assert!(big("1000000000") > big("999999999"));
        assert_eq!(big("0").cmp(&BigUint::zero()), Ordering::Equal);
    }
}
