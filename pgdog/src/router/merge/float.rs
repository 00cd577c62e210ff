//! `float4`/`float8` text as PostgreSQL prints it with the default `extra_float_digits = 1`:
//! the shortest digits that read back to the same value, in fixed notation for decimal
//! exponents from -4 up to 14 (float8) or 5 (float4), otherwise as `1.5e+20`; plus parsing
//! of that text.

/// Prints a `float8` like PostgreSQL.
pub fn format_float8(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    layout(&format!("{v:e}"), 15)
}

/// Prints a `float4` like PostgreSQL.
pub fn format_float4(v: f32) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    layout(&format!("{v:e}"), 6)
}

/// Lays out Rust's shortest scientific form (`-1.5e-5`) the way PostgreSQL does: fixed
/// notation when `-4 <= exponent < fixed_below`.
fn layout(sci: &str, fixed_below: i32) -> String {
    let (negative, sci) = match sci.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, sci),
    };
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::with_capacity(digits.len() + 8);
    if negative {
        out.push('-');
    }
    if (-4..fixed_below).contains(&exponent) {
        if exponent >= 0 {
            let int_len = exponent as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.push_str(&"0".repeat(int_len - digits.len()));
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        } else {
            out.push_str("0.");
            out.push_str(&"0".repeat((-exponent - 1) as usize));
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exponent < 0 { '-' } else { '+' };
        out.push_str(&format!("e{sign}{:02}", exponent.unsigned_abs()));
    }
    out
}

/// Parses `float8` text: decimal or exponent notation, `NaN`, `Infinity`, `-Infinity`.
pub fn parse_float8(text: &[u8]) -> Option<f64> {
    match special(text) {
        Some(v) => Some(v),
        None => plain(text)?.parse().ok(),
    }
}

/// Parses `float4` text (the exact `float4` the server meant, widened).
pub fn parse_float4(text: &[u8]) -> Option<f64> {
    match special(text) {
        Some(v) => Some(v),
        None => plain(text)?.parse::<f32>().ok().map(f64::from),
    }
}

fn special(text: &[u8]) -> Option<f64> {
    match text {
        b"NaN" => Some(f64::NAN),
        b"Infinity" => Some(f64::INFINITY),
        b"-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// The text if it only has characters of a decimal number (Rust would also accept `inf`).
fn plain(text: &[u8]) -> Option<&str> {
    let ok = !text.is_empty()
        && text
            .iter()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    if ok {
        std::str::from_utf8(text).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every expected string is what PostgreSQL 15 prints for the same value.
    #[test]
    fn float8_like_postgres() {
        let cases: &[(f64, &str)] = &[
            (1.5, "1.5"),
            (0.1, "0.1"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e15, "1e+15"),
            (1e14, "100000000000000"),
            (123456789012345.0, "123456789012345"),
            (1234567890123456.0, "1.234567890123456e+15"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1e100, "1e+100"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (-0.0, "-0"),
            (0.0, "0"),
            (-2.5, "-2.5"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (v, text) in cases {
            assert_eq!(format_float8(*v), *text);
            let back = parse_float8(text.as_bytes()).unwrap();
            assert!(back.to_bits() == v.to_bits() || (back.is_nan() && v.is_nan()));
        }
    }

    #[test]
    fn float4_like_postgres() {
        let cases: &[(f32, &str)] = &[
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (999999.0, "999999"),
            (100000.0, "100000"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (1.5e-5, "1.5e-05"),
            (123456.7, "123456.7"),
        ];
        for (v, text) in cases {
            assert_eq!(format_float4(*v), *text);
            assert_eq!(parse_float4(text.as_bytes()), Some(f64::from(*v)));
        }
    }

    #[test]
    fn rejects_other_text() {
        for bad in ["", "inf", "nan", "1x", "infinity", " 1"] {
            assert!(parse_float8(bad.as_bytes()).is_none(), "{bad}");
        }
    }
}
