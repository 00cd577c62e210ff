//! Exact `numeric` values for merging: the text and binary wire forms, addition, comparison
//! (NaN above +Infinity, as PostgreSQL orders them), and the division behind `avg`, with
//! PostgreSQL's result scale (`select_div_scale`) and rounding (half away from zero), so a
//! merged average prints exactly what one database would print.

use std::cmp::Ordering;

use super::bignum::BigUint;

/// Sign word of a positive (or zero) numeric in the binary format.
const SIGN_POS: u16 = 0x0000;
/// Sign word of a negative numeric.
const SIGN_NEG: u16 = 0x4000;
/// Sign word of NaN.
const SIGN_NAN: u16 = 0xC000;
/// Sign word of +Infinity.
const SIGN_PINF: u16 = 0xD000;
/// Sign word of -Infinity.
const SIGN_NINF: u16 = 0xF000;
/// The bits of the binary dscale word that may be set.
const DSCALE_MASK: u16 = 0x3FFF;
/// Significant digits a division yields at least (`NUMERIC_MIN_SIG_DIGITS`).
const MIN_SIG_DIGITS: i64 = 16;
/// Largest result scale of a division (`NUMERIC_MAX_DISPLAY_SCALE`).
const MAX_DISPLAY_SCALE: i64 = 1000;

/// A `numeric` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Numeric {
    /// `NaN`.
    NaN,
    /// `Infinity`.
    Infinity,
    /// `-Infinity`.
    NegInfinity,
    /// A finite value.
    Finite(Decimal),
}

/// A finite decimal: `(-1)^negative * mag / 10^scale`, where `scale` is the display scale
/// (digits printed after the point). Zero is never negative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal {
    negative: bool,
    mag: BigUint,
    scale: u32,
}

impl Decimal {
    fn new(negative: bool, mag: BigUint, scale: u32) -> Decimal {
        Decimal {
            negative: negative && !mag.is_zero(),
            mag,
            scale,
        }
    }

    /// The magnitude scaled to `scale` (not below the own scale).
    fn mag_at(&self, scale: u32) -> BigUint {
        let mut mag = self.mag.clone();
        mag.mul_pow10(scale.saturating_sub(self.scale));
        mag
    }

    fn add(&self, other: &Decimal) -> Decimal {
        let scale = self.scale.max(other.scale);
        let (a, b) = (self.mag_at(scale), other.mag_at(scale));
        if self.negative == other.negative {
            return Decimal::new(self.negative, a.add(&b), scale);
        }
        match a.cmp(&b) {
            Ordering::Less => Decimal::new(other.negative, b.sub(&a), scale),
            _ => Decimal::new(self.negative, a.sub(&b), scale),
        }
    }

    fn compare(&self, other: &Decimal) -> Ordering {
        match (self.negative, other.negative) {
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (negative, _) => {
                let scale = self.scale.max(other.scale);
                let order = self.mag_at(scale).cmp(&other.mag_at(scale));
                if negative {
                    order.reverse()
                } else {
                    order
                }
            }
        }
    }

    /// The digits before and after the point.
    fn parts(&self) -> (String, String) {
        let digits = self.mag.to_digits();
        let scale = self.scale as usize;
        let padded = if digits.len() <= scale {
            format!("{}{digits}", "0".repeat(scale + 1 - digits.len()))
        } else {
            digits
        };
        let (int, frac) = padded.split_at(padded.len() - scale);
        (int.to_string(), frac.to_string())
    }

    /// The base-10000 digits with no zero digit at either end, and the weight (power of 10000)
    /// of the first one; zero is `(0, [])`.
    fn base10000(&self) -> (i64, Vec<u16>) {
        let (int, frac) = self.parts();
        let int = format!("{}{int}", "0".repeat((4 - int.len() % 4) % 4));
        let frac = format!("{frac}{}", "0".repeat((4 - frac.len() % 4) % 4));
        let mut weight = (int.len() / 4) as i64 - 1;
        let all = format!("{int}{frac}");
        let mut groups: Vec<u16> = all
            .as_bytes()
            .chunks(4)
            .map(|c| c.iter().fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0')))
            .collect();
        let leading = groups.iter().take_while(|g| **g == 0).count();
        groups.drain(..leading);
        weight -= leading as i64;
        while groups.last() == Some(&0) {
            groups.pop();
        }
        if groups.is_empty() {
            weight = 0;
        }
        (weight, groups)
    }
}

impl Numeric {
    /// An integer.
    pub fn from_i128(v: i128) -> Numeric {
        Numeric::Finite(Decimal::new(v < 0, BigUint::from_u128(v.unsigned_abs()), 0))
    }

    /// Parses the text form PostgreSQL prints: `-123.4500`, `NaN`, `Infinity`, `-Infinity`.
    pub fn parse_text(text: &[u8]) -> Option<Numeric> {
        match text {
            b"NaN" => return Some(Numeric::NaN),
            b"Infinity" => return Some(Numeric::Infinity),
            b"-Infinity" => return Some(Numeric::NegInfinity),
            _ => {}
        }
        let (negative, rest) = match text.first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let (int, frac) = match rest.iter().position(|b| *b == b'.') {
            Some(dot) => (&rest[..dot], &rest[dot + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let mut digits = Vec::with_capacity(int.len() + frac.len());
        digits.extend_from_slice(int);
        digits.extend_from_slice(frac);
        let mag = BigUint::from_digits(&digits)?;
        let scale = u32::try_from(frac.len()).ok()?;
        Some(Numeric::Finite(Decimal::new(negative, mag, scale)))
    }

    /// Decodes the binary form: int16 ndigits, int16 weight, uint16 sign, uint16 dscale, then
    /// ndigits base-10000 digits. Digits beyond dscale are truncated, as the server does.
    pub fn decode_binary(bytes: &[u8]) -> Option<Numeric> {
        let word = |i: usize| -> Option<u16> {
            let b = bytes.get(i * 2..i * 2 + 2)?;
            Some(u16::from_be_bytes([b[0], b[1]]))
        };
        let ndigits = word(0)? as i16;
        let weight = i64::from(word(1)? as i16);
        let sign = word(2)?;
        let dscale = word(3)?;
        if ndigits < 0 || bytes.len() != 8 + 2 * ndigits as usize {
            return None;
        }
        let negative = match sign {
            SIGN_POS => false,
            SIGN_NEG => true,
            SIGN_NAN => return Some(Numeric::NaN),
            SIGN_PINF => return Some(Numeric::Infinity),
            SIGN_NINF => return Some(Numeric::NegInfinity),
            _ => return None,
        };
        if dscale & !DSCALE_MASK != 0 {
            return None;
        }
        let mut mag = BigUint::zero();
        for i in 0..ndigits as usize {
            let digit = word(4 + i)?;
            if digit >= 10000 {
                return None;
            }
            mag.mul_small(10000);
            mag.add_small(u32::from(digit));
        }
        // The last digit stands for 10000^last.
        let last = weight - i64::from(ndigits) + 1;
        let mut scale = 0u32;
        if last < 0 {
            scale = u32::try_from(-last * 4).ok()?;
        } else {
            mag.mul_pow10(u32::try_from(last * 4).ok()?);
        }
        let dscale = u32::from(dscale);
        if scale > dscale {
            mag.div_pow10(scale - dscale);
        } else {
            mag.mul_pow10(dscale - scale);
        }
        Some(Numeric::Finite(Decimal::new(negative, mag, dscale)))
    }

    /// The text form, with exactly the display scale's digits after the point.
    pub fn to_text(&self) -> String {
        match self {
            Numeric::NaN => "NaN".into(),
            Numeric::Infinity => "Infinity".into(),
            Numeric::NegInfinity => "-Infinity".into(),
            Numeric::Finite(d) => {
                let (int, frac) = d.parts();
                let sign = if d.negative { "-" } else { "" };
                if frac.is_empty() {
                    format!("{sign}{int}")
                } else {
                    format!("{sign}{int}.{frac}")
                }
            }
        }
    }

    /// The binary form; `None` when the value has more digits than the format can carry.
    pub fn to_binary(&self) -> Option<Vec<u8>> {
        let header = |ndigits: i16, weight: i16, sign: u16, dscale: u16| {
            let mut out = Vec::with_capacity(8 + ndigits.max(0) as usize * 2);
            out.extend_from_slice(&ndigits.to_be_bytes());
            out.extend_from_slice(&weight.to_be_bytes());
            out.extend_from_slice(&sign.to_be_bytes());
            out.extend_from_slice(&dscale.to_be_bytes());
            out
        };
        let d = match self {
            Numeric::NaN => return Some(header(0, 0, SIGN_NAN, 0)),
            Numeric::Infinity => return Some(header(0, 0, SIGN_PINF, 0)),
            Numeric::NegInfinity => return Some(header(0, 0, SIGN_NINF, 0)),
            Numeric::Finite(d) => d,
        };
        let (weight, groups) = d.base10000();
        let dscale = u16::try_from(d.scale)
            .ok()
            .filter(|s| s & !DSCALE_MASK == 0)?;
        let sign = if d.negative { SIGN_NEG } else { SIGN_POS };
        let ndigits = i16::try_from(groups.len()).ok()?;
        let mut out = header(ndigits, i16::try_from(weight).ok()?, sign, dscale);
        for g in groups {
            out.extend_from_slice(&g.to_be_bytes());
        }
        Some(out)
    }

    /// The text form without trailing fractional zeros: equal values (`1.0`, `1.00`) give
    /// equal strings.
    pub fn normalized(&self) -> String {
        let text = self.to_text();
        if matches!(self, Numeric::Finite(_)) && text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        }
    }

    /// The sum, as PostgreSQL adds numerics (display scale: the larger one; NaN wins; +Infinity
    /// plus -Infinity is NaN).
    pub fn add(&self, other: &Numeric) -> Numeric {
        use Numeric::*;
        match (self, other) {
            (NaN, _) | (_, NaN) => NaN,
            (Infinity, NegInfinity) | (NegInfinity, Infinity) => NaN,
            (Infinity, _) | (_, Infinity) => Infinity,
            (NegInfinity, _) | (_, NegInfinity) => NegInfinity,
            (Finite(a), Finite(b)) => Finite(a.add(b)),
        }
    }

    /// PostgreSQL's order: -Infinity, finite values, Infinity, NaN (NaN equals NaN).
    pub fn compare(&self, other: &Numeric) -> Ordering {
        let rank = |n: &Numeric| match n {
            Numeric::NegInfinity => 0,
            Numeric::Finite(_) => 1,
            Numeric::Infinity => 2,
            Numeric::NaN => 3,
        };
        match (self, other) {
            (Numeric::Finite(a), Numeric::Finite(b)) => a.compare(b),
            _ => rank(self).cmp(&rank(other)),
        }
    }

    /// `self / count` as PostgreSQL's `numeric_div` computes an average: the result scale
    /// gives at least 16 significant digits and is not below the dividend's display scale,
    /// rounded half away from zero. `count` must not be zero.
    pub fn div_count(&self, count: u64) -> Numeric {
        let sum = match self {
            Numeric::Finite(d) => d,
            special => return special.clone(),
        };
        let divisor = Decimal::new(false, BigUint::from_u128(u128::from(count)), 0);
        let (weight1, digits1) = sum.base10000();
        let (weight2, digits2) = divisor.base10000();
        let first1 = digits1.first().copied().unwrap_or(0);
        let first2 = digits2.first().copied().unwrap_or(0);
        let mut qweight = weight1 - weight2;
        if first1 <= first2 {
            qweight -= 1;
        }
        let rscale = (MIN_SIG_DIGITS - qweight * 4)
            .max(i64::from(sum.scale))
            .clamp(0, MAX_DISPLAY_SCALE) as u32;
        let count = count.max(1);
        let quotient = if rscale >= sum.scale {
            // round(mag * 10^(rscale - scale) / count)
            let (mut quotient, rem) = sum.mag_at(rscale).divrem(count);
            if u128::from(rem) * 2 >= u128::from(count) {
                quotient.add_small(1);
            }
            quotient
        } else {
            // More input digits than the largest result scale: round(mag / 10^d / count) is
            // floor((floor(2 * mag / 10^d) + count) / (2 * count)).
            let mut twice = sum.mag.add(&sum.mag);
            twice.div_pow10(sum.scale - rscale);
            let numerator = twice.add(&BigUint::from_u128(u128::from(count)));
            numerator.divrem(count.saturating_mul(2)).0
        };
        Numeric::Finite(Decimal::new(sum.negative, quotient, rscale))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Numeric {
        Numeric::parse_text(s.as_bytes()).unwrap()
    }

    #[test]
    fn text_round_trip() {
        for s in [
            "0",
            "0.00",
            "1",
            "-12.5",
            "0.0001",
            "-0.001",
            "123456789.123",
            "NaN",
            "Infinity",
            "-Infinity",
            "98765432109876543210.0123456789",
        ] {
            assert_eq!(n(s).to_text(), s);
        }
        assert_eq!(n("-0").to_text(), "0");
        assert_eq!(n("-0.00").to_text(), "0.00");
        assert_eq!(n(".5").to_text(), "0.5");
        assert_eq!(n("5.").to_text(), "5");
        for bad in ["", "-", ".", "1.2.3", "abc", "1e5", "nan", "- 1"] {
            assert!(Numeric::parse_text(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    fn layout(ndigits: i16, weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> Vec<u8> {
        let mut out = Vec::new();
        for w in [ndigits, weight, sign as i16, dscale as i16] {
            out.extend_from_slice(&w.to_be_bytes());
        }
        for d in digits {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out
    }

    #[test]
    fn binary_layouts() {
        let cases: &[(&str, Vec<u8>)] = &[
            ("0", layout(0, 0, SIGN_POS, 0, &[])),
            ("0.00", layout(0, 0, SIGN_POS, 2, &[])),
            ("1", layout(1, 0, SIGN_POS, 0, &[1])),
            ("-12.5", layout(2, 0, SIGN_NEG, 1, &[12, 5000])),
            ("10000", layout(1, 1, SIGN_POS, 0, &[1])),
            ("0.0001", layout(1, -1, SIGN_POS, 4, &[1])),
            ("0.00001", layout(1, -2, SIGN_POS, 5, &[1000])),
            (
                "123456789.123",
                layout(4, 2, SIGN_POS, 3, &[1, 2345, 6789, 1230]),
            ),
            ("1.50", layout(2, 0, SIGN_POS, 2, &[1, 5000])),
            ("100000000", layout(1, 2, SIGN_POS, 0, &[1])),
            ("NaN", layout(0, 0, SIGN_NAN, 0, &[])),
            ("Infinity", layout(0, 0, SIGN_PINF, 0, &[])),
            ("-Infinity", layout(0, 0, SIGN_NINF, 0, &[])),
        ];
        for (text, bytes) in cases {
            assert_eq!(&n(text).to_binary().unwrap(), bytes, "{text}");
            assert_eq!(Numeric::decode_binary(bytes).unwrap(), n(text), "{text}");
        }
        // Digits beyond dscale are cut off; a dscale beyond the digits pads.
        let hidden = layout(2, 0, SIGN_POS, 1, &[1, 5678]);
        assert_eq!(Numeric::decode_binary(&hidden).unwrap().to_text(), "1.5");
        let padded = layout(1, 1, SIGN_POS, 3, &[2]);
        assert_eq!(
            Numeric::decode_binary(&padded).unwrap().to_text(),
            "20000.000"
        );
        for bad in [
            layout(1, 0, SIGN_POS, 0, &[]),
            layout(1, 0, SIGN_POS, 0, &[10000]),
            layout(0, 0, 0x1234, 0, &[]),
            layout(0, 0, SIGN_POS, 0x4000, &[]),
            layout(-1, 0, SIGN_POS, 0, &[]),
            vec![0, 1],
        ] {
            assert!(Numeric::decode_binary(&bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn addition_and_order() {
        assert_eq!(n("1.5").add(&n("2.25")).to_text(), "3.75");
        assert_eq!(n("1.50").add(&n("-1.5")).to_text(), "0.00");
        assert_eq!(n("-3").add(&n("1.0")).to_text(), "-2.0");
        assert_eq!(n("1").add(&n("-3")).to_text(), "-2");
        assert_eq!(
            n("99999999999999999999").add(&n("1")).to_text(),
            "100000000000000000000"
        );
        assert_eq!(n("Infinity").add(&n("-Infinity")), Numeric::NaN);
        assert_eq!(n("Infinity").add(&n("5")), Numeric::Infinity);
        assert_eq!(n("NaN").add(&n("-Infinity")), Numeric::NaN);
        let sorted = [
            "-Infinity",
            "-100",
            "-1.5",
            "-1.25",
            "0",
            "0.001",
            "1",
            "1.5",
            "20",
            "Infinity",
            "NaN",
        ];
        for (i, a) in sorted.iter().enumerate() {
            for (j, b) in sorted.iter().enumerate() {
                assert_eq!(n(a).compare(&n(b)), i.cmp(&j), "{a} vs {b}");
            }
        }
        assert_eq!(n("1.0").compare(&n("1.000")), Ordering::Equal);
        assert_eq!(n("1.0").normalized(), n("1.000").normalized());
        assert_eq!(n("10").normalized(), "10");
        assert_eq!(n("0.00").normalized(), "0");
        assert_eq!(n("-1.50").normalized(), "-1.5");
    }

    /// Expected strings printed by PostgreSQL 15 for `avg` over the same values.
    #[test]
    fn averages_like_postgres() {
        let avg = |sum: &str, count: u64| n(sum).div_count(count).to_text();
        // select avg(x) from (values (1),(2)) t(x)
        assert_eq!(avg("3", 2), "1.5000000000000000");
        // values (1),(2),(2)
        assert_eq!(avg("5", 3), "1.6666666666666667");
        // values (0),(0)
        assert_eq!(avg("0", 2), "0.00000000000000000000");
        // avg of 0.<1001 digits>5 and 0: rounded to 1000 digits like the server does.
        let long = format!("0.{}5", "1".repeat(1000));
        assert_eq!(avg(&long, 1), format!("0.{}2", "1".repeat(999)));
        assert_eq!(avg(&long, 2), format!("0.0{}6", "5".repeat(998)));
        assert_eq!(avg("NaN", 2), "NaN");
        assert_eq!(avg("-Infinity", 2), "-Infinity");
    }
}
