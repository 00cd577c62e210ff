//! Numbers for people: byte sizes and counts with units (`12.3 MB`, `4.5M`), used by the
//! admin database's progress tables and the CLI alike.

/// `1536` → `1.5 kB`; decimal units like `pg_size_pretty`'s neighbours in most tools.
pub fn bytes(n: u64) -> String {
    scaled(n, &["B", "kB", "MB", "GB", "TB", "PB"], " ")
}

/// `1234567` → `1.2M`.
pub fn count(n: u64) -> String {
    scaled(n, &["", "k", "M", "G", "T", "P"], "")
}

fn scaled(n: u64, units: &[&str], gap: &str) -> String {
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}{gap}{}", units[0]).trim_end().to_string()
    } else {
        format!("{value:.1}{gap}{}", units[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_500), "1.5 kB");
        assert_eq!(bytes(2_340_000_000), "2.3 GB");
        assert_eq!(count(12), "12");
        assert_eq!(count(1_234_567), "1.2M");
    }
}
