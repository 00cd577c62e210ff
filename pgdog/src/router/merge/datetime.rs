//! Date and time values as comparable numbers: `date`, `time`, `timetz`, `timestamp`,
//! `timestamptz` and `interval`, from their binary form or the text PostgreSQL prints with
//! `DateStyle = ISO` and `IntervalStyle = postgres` (the defaults). Other styles are rejected
//! rather than misread.

/// Microseconds per second.
const USECS_PER_SEC: i128 = 1_000_000;
/// Microseconds per day.
const USECS_PER_DAY: i128 = 86_400 * USECS_PER_SEC;
/// Days from 1970-01-01 to 2000-01-01 (PostgreSQL's epoch).
const POSTGRES_EPOCH_DAYS: i64 = 10_957;

/// `-infinity` of any of the point-in-time types.
pub const MINUS_INFINITY: i128 = i128::MIN;
/// `infinity` of any of the point-in-time types.
pub const INFINITY: i128 = i128::MAX;

/// A `date` as days since 2000-01-01 (infinities as [`MINUS_INFINITY`]/[`INFINITY`]).
pub fn date(value: &[u8], binary: bool) -> Option<i128> {
    if binary {
        let days = i32::from_be_bytes(value.try_into().ok()?);
        return Some(match days {
            i32::MIN => MINUS_INFINITY,
            i32::MAX => INFINITY,
            days => i128::from(days),
        });
    }
    if let Some(v) = infinity(value) {
        return Some(v);
    }
    let mut c = Cursor::new(value);
    let days = c.date()?;
    let bc = c.bc()?;
    c.end()?;
    bc_days(days, bc)
}

/// A `time` as microseconds after midnight.
pub fn time(value: &[u8], binary: bool) -> Option<i128> {
    if binary {
        return Some(i128::from(i64::from_be_bytes(value.try_into().ok()?)));
    }
    let mut c = Cursor::new(value);
    let t = c.time()?;
    c.end()?;
    Some(t)
}

/// A `timetz` as PostgreSQL orders it: the UTC time first, then the zone (seconds west).
pub fn timetz(value: &[u8], binary: bool) -> Option<(i128, i32)> {
    let (local, west) = if binary {
        let time = i64::from_be_bytes(value.get(..8)?.try_into().ok()?);
        let zone = i32::from_be_bytes(value.get(8..)?.try_into().ok()?);
        (i128::from(time), zone)
    } else {
        let mut c = Cursor::new(value);
        let t = c.time()?;
        let east = c.offset()?;
        c.end()?;
        (t, i32::try_from(-east).ok()?)
    };
    Some((local + i128::from(west) * USECS_PER_SEC, west))
}

/// A `timestamp` as microseconds since 2000-01-01 00:00.
pub fn timestamp(value: &[u8], binary: bool) -> Option<i128> {
    stamp(value, binary, false)
}

/// A `timestamptz` as microseconds since 2000-01-01 00:00 UTC.
pub fn timestamptz(value: &[u8], binary: bool) -> Option<i128> {
    stamp(value, binary, true)
}

fn stamp(value: &[u8], binary: bool, zoned: bool) -> Option<i128> {
    if binary {
        return Some(match i64::from_be_bytes(value.try_into().ok()?) {
            i64::MIN => MINUS_INFINITY,
            i64::MAX => INFINITY,
            us => i128::from(us),
        });
    }
    if let Some(v) = infinity(value) {
        return Some(v);
    }
    let mut c = Cursor::new(value);
    let days = c.date()?;
    c.eat(b' ').then_some(())?;
    let t = c.time()?;
    let east = if zoned { c.offset()? } else { 0 };
    let bc = c.bc()?;
    c.end()?;
    let days = bc_days(days, bc)?;
    Some(days * USECS_PER_DAY + t - i128::from(east) * USECS_PER_SEC)
}

/// An `interval` as PostgreSQL compares it: months count 30 days, days 24 hours.
pub fn interval(value: &[u8], binary: bool) -> Option<i128> {
    let (micros, days, months) = if binary {
        let micros = i64::from_be_bytes(value.get(..8)?.try_into().ok()?);
        let days = i32::from_be_bytes(value.get(8..12)?.try_into().ok()?);
        let months = i32::from_be_bytes(value.get(12..)?.try_into().ok()?);
        (i128::from(micros), i128::from(days), i128::from(months))
    } else {
        interval_text(value)?
    };
    Some(micros + (days + months * 30) * USECS_PER_DAY)
}

/// `1 year 2 mons -3 days +04:05:06.5` (IntervalStyle postgres).
fn interval_text(value: &[u8]) -> Option<(i128, i128, i128)> {
    let text = std::str::from_utf8(value).ok()?;
    let (mut micros, mut days, mut months) = (0i128, 0i128, 0i128);
    let mut words = text.split(' ');
    let mut any = false;
    while let Some(word) = words.next() {
        any = true;
        if word.contains(':') {
            let (negative, rest) = match word.as_bytes().first()? {
                b'-' => (true, &word[1..]),
                b'+' => (false, &word[1..]),
                _ => (false, word),
            };
            let mut c = Cursor::new(rest.as_bytes());
            let t = c.clock(usize::MAX)?;
            c.end()?;
            micros += if negative { -t } else { t };
            continue;
        }
        let n: i128 = word.parse().ok()?;
        match words.next()? {
            "year" | "years" => months += n * 12,
            "mon" | "mons" => months += n,
            "day" | "days" => days += n,
            _ => return None,
        }
    }
    any.then_some((micros, days, months))
}

fn infinity(value: &[u8]) -> Option<i128> {
    match value {
        b"infinity" => Some(INFINITY),
        b"-infinity" => Some(MINUS_INFINITY),
        _ => None,
    }
}

/// Days since 2000-01-01 of a date given with its year as printed (`bc`: before Christ, so
/// year 1 BC is astronomical year 0).
fn bc_days(parts: (i64, i64, i64), bc: bool) -> Option<i128> {
    let (year, month, day) = parts;
    let year = if bc { 1 - year } else { year };
    Some(i128::from(
        days_from_civil(year, month, day)? - POSTGRES_EPOCH_DAYS,
    ))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> Option<i64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// A cursor over ISO date/time text.
struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a [u8]) -> Cursor<'a> {
        Cursor { s, pos: 0 }
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.s.get(self.pos) == Some(&b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Between `min` and `max` decimal digits.
    fn number(&mut self, min: usize, max: usize) -> Option<i64> {
        let start = self.pos;
        let mut v: i64 = 0;
        while self.pos - start < max {
            match self.s.get(self.pos) {
                Some(d) if d.is_ascii_digit() => {
                    v = v.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
                    self.pos += 1;
                }
                _ => break,
            }
        }
        (self.pos - start >= min).then_some(v)
    }

    /// `YYYY-MM-DD` (the year may have more digits).
    fn date(&mut self) -> Option<(i64, i64, i64)> {
        let year = self.number(4, 9)?;
        self.eat(b'-').then_some(())?;
        let month = self.number(2, 2)?;
        self.eat(b'-').then_some(())?;
        let day = self.number(2, 2)?;
        Some((year, month, day))
    }

    /// `HH:MM:SS[.ffffff]` as microseconds, hours up to 24.
    fn time(&mut self) -> Option<i128> {
        let t = self.clock(2)?;
        (t <= 24 * 3600 * USECS_PER_SEC).then_some(t)
    }

    /// `H:MM:SS[.ffffff]` with at most `hour_digits` hour digits, as microseconds.
    fn clock(&mut self, hour_digits: usize) -> Option<i128> {
        let hours = self.number(2.min(hour_digits), hour_digits)?;
        self.eat(b':').then_some(())?;
        let minutes = self.number(2, 2)?;
        self.eat(b':').then_some(())?;
        let seconds = self.number(2, 2)?;
        if minutes > 59 || seconds > 60 {
            return None;
        }
        let mut micros = 0i128;
        if self.eat(b'.') {
            let start = self.pos;
            let frac = self.number(1, 6)?;
            let digits = self.pos - start;
            micros = i128::from(frac) * 10i128.pow(6 - digits as u32);
        }
        Some(
            (i128::from(hours) * 3600 + i128::from(minutes) * 60 + i128::from(seconds))
                * USECS_PER_SEC
                + micros,
        )
    }

    /// A UTC offset `+HH[:MM[:SS]]` in seconds east.
    fn offset(&mut self) -> Option<i64> {
        let sign = if self.eat(b'+') {
            1
        } else if self.eat(b'-') {
            -1
        } else {
            return None;
        };
        let mut seconds = self.number(2, 2)? * 3600;
        if self.eat(b':') {
            seconds += self.number(2, 2)? * 60;
            if self.eat(b':') {
                seconds += self.number(2, 2)?;
            }
        }
        Some(sign * seconds)
    }

    /// An optional ` BC` suffix.
    fn bc(&mut self) -> Option<bool> {
        if self.pos == self.s.len() {
            return Some(false);
        }
        (self.s.get(self.pos..) == Some(&b" BC"[..])).then(|| {
            self.pos = self.s.len();
            true
        })
    }

    fn end(&self) -> Option<()> {
        (self.pos == self.s.len()).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> i128 {
        timestamptz(s.as_bytes(), false).unwrap()
    }

    #[test]
    fn dates() {
        assert_eq!(date(b"2000-01-01", false), Some(0));
        assert_eq!(date(b"2000-03-01", false), Some(60));
        assert_eq!(date(b"1999-12-31", false), Some(-1));
        assert_eq!(date(b"0001-01-01", false), Some(-730_119));
        // 1 BC is the year before 1 AD.
        assert_eq!(date(b"0001-12-31 BC", false), Some(-730_120));
        assert!(date(b"0044-03-15 BC", false) < date(b"0001-01-01", false));
        assert!(date(b"20000-01-01", false) > date(b"9999-12-31", false));
        assert_eq!(date(b"infinity", false), Some(INFINITY));
        assert_eq!(date(b"-infinity", false), Some(MINUS_INFINITY));
        assert_eq!(date(&(-1i32).to_be_bytes(), true), Some(-1));
        assert_eq!(date(&i32::MAX.to_be_bytes(), true), Some(INFINITY));
        for bad in ["2000-1-01", "01/02/2000", "2000-13-01", "2000-01-01 AD", ""] {
            assert!(date(bad.as_bytes(), false).is_none(), "{bad}");
        }
        assert!(date(b"123", true).is_none());
    }

    #[test]
    fn times() {
        assert_eq!(time(b"00:00:01", false), Some(1_000_000));
        assert_eq!(time(b"12:00:00.5", false), Some(43_200_500_000));
        assert_eq!(time(b"24:00:00", false), Some(86_400_000_000));
        assert!(time(b"25:00:00", false).is_none());
        assert!(time(b"12:00", false).is_none());
        assert_eq!(time(&5i64.to_be_bytes(), true), Some(5));
        // 12:00+05:30 is 06:30 UTC: before 07:00+00.
        let a = timetz(b"12:00:00+05:30", false).unwrap();
        let b = timetz(b"07:00:00+00", false).unwrap();
        assert!(a < b);
        assert_eq!(a, (6 * 3600 * 1_000_000 + 1_800_000_000, -19_800));
        let mut binary = (43_200_000_000i64).to_be_bytes().to_vec();
        binary.extend_from_slice(&(-19_800i32).to_be_bytes());
        assert_eq!(timetz(&binary, true), Some(a));
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(b"2000-01-01 00:00:00", false), Some(0));
        assert_eq!(
            timestamp(b"2000-01-02 00:00:01.25", false),
            Some(86_401_250_000)
        );
        // The same instant in different zones.
        assert_eq!(
            t("2024-01-02 03:04:05.123+01"),
            t("2024-01-02 02:04:05.123+00")
        );
        assert_eq!(t("2024-01-01 12:00:00-03:30"), t("2024-01-01 15:30:00+00"));
        assert_eq!(
            t("1800-01-01 00:00:00+00:19:32"),
            t("1799-12-31 23:40:28+00")
        );
        assert!(t("0044-03-15 00:00:00+00:19:32 BC") < t("0001-01-01 00:00:00+00"));
        assert!(t("20000-01-01 00:00:00+01") > t("9999-01-01 00:00:00+00"));
        assert_eq!(t("infinity"), INFINITY);
        assert!(timestamptz(b"2024-01-01 12:00:00", false).is_none());
        assert!(timestamp(b"2024-01-01 12:00:00+01", false).is_none());
        assert!(timestamp(b"2024-01-01T12:00:00", false).is_none());
        assert_eq!(
            timestamp(&i64::MIN.to_be_bytes(), true),
            Some(MINUS_INFINITY)
        );
        assert_eq!(timestamptz(&7i64.to_be_bytes(), true), Some(7));
    }

    #[test]
    fn intervals() {
        let i = |s: &str| interval(s.as_bytes(), false).unwrap();
        let day = USECS_PER_DAY;
        assert_eq!(i("1 day 12:00:00"), day + day / 2);
        assert_eq!(i("1 mon -1 days"), 29 * day);
        assert_eq!(i("-1 years -2 mons"), -14 * 30 * day);
        assert_eq!(i("100:00:00"), 100 * 3600 * USECS_PER_SEC);
        assert_eq!(i("-00:00:01"), -USECS_PER_SEC);
        assert_eq!(i("-1 days +02:00:00"), -day + 2 * 3600 * USECS_PER_SEC);
        assert_eq!(i("00:00:00"), 0);
        assert_eq!(
            i("1 year 2 mons 3 days 04:05:06.5"),
            i("1 year 2 mons 3 days 04:05:06.500")
        );
        for bad in ["", "P1Y", "@ 1 year", "1-2", "1 fortnight", "5"] {
            assert!(interval(bad.as_bytes(), false).is_none(), "{bad}");
        }
        let mut binary = 1i64.to_be_bytes().to_vec();
        binary.extend_from_slice(&1i32.to_be_bytes());
        binary.extend_from_slice(&1i32.to_be_bytes());
        assert_eq!(interval(&binary, true), Some(1 + 31 * day));
    }
}
