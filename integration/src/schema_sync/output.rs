//! Reading what `pgdog schema-sync` prints: the per-shard summary lines
//! (`shard 0: 3 created, 17 already existed, 0 differ, 0 failed`), the `--dry-run` SQL per
//! shard (after a `-- shard N ...` line), and SQL text split into statements.

use std::collections::BTreeMap;

/// One `shard N: A created, B already existed, C differ, D failed` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSummary {
    /// The shard number.
    pub shard: usize,
    /// Statements that created or changed something.
    pub created: u64,
    /// Statements whose object already existed identically.
    pub existed: u64,
    /// Objects that exist but differ.
    pub differ: u64,
    /// Statements that failed.
    pub failed: u64,
}

/// Every summary line in `text`, in order.
pub fn summaries(text: &str) -> Vec<ShardSummary> {
    text.lines().filter_map(parse_summary).collect()
}

/// The summary of shard `shard` in `text`, if printed (the last one when printed twice).
pub fn summary_of(text: &str, shard: usize) -> Option<ShardSummary> {
    summaries(text).into_iter().rfind(|s| s.shard == shard)
}

fn parse_summary(line: &str) -> Option<ShardSummary> {
    let start = line.find("shard ")?;
    let rest = &line[start + "shard ".len()..];
    let (shard, rest) = rest.split_once(':')?;
    let shard = shard.trim().parse().ok()?;
    let count = |label: &str| -> Option<u64> {
        let before = &rest[..rest.find(label)?];
        let number = before.trim_end().rsplit([' ', ',']).next()?;
        number.parse().ok()
    };
    Some(ShardSummary {
        shard,
        created: count(" created")?,
        existed: count(" already existed")?,
        differ: count(" differ")?,
        failed: count(" failed")?,
    })
}

/// The `--dry-run` output by shard: the text after each line starting with `-- shard N` up to
/// the next such line, without summary lines.
pub fn dry_run_sections(stdout: &str) -> BTreeMap<usize, String> {
    let mut sections: BTreeMap<usize, String> = BTreeMap::new();
    let mut current: Option<usize> = None;
    for line in stdout.lines() {
        if let Some(shard) = section_header(line) {
            current = Some(shard);
            sections.entry(shard).or_default();
            continue;
        }
        if parse_summary(line).is_some() {
            continue;
        }
        if let Some(shard) = current {
            let section = sections.entry(shard).or_default();
            section.push_str(line);
            section.push('\n');
        }
    }
    sections
}

fn section_header(line: &str) -> Option<usize> {
    let rest = line.trim_start().strip_prefix("-- shard ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// `sql` split into statements at top-level `;` (not inside quotes, quoted identifiers,
/// dollar quotes or comments), each trimmed and ending with its `;`. Text after the last `;`
/// that is not only whitespace and comments is returned as a last, unterminated statement.
pub fn statements(sql: &str) -> Vec<String> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\'' | '"' => i = skip_quoted(&chars, i, chars[i]),
            '-' if chars.get(i + 1) == Some(&'-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    i += 1;
                }
                i += 2;
            }
            '$' => i = skip_dollar_quoted(&chars, i),
            ';' => {
                let text: String = chars[start..=i].iter().collect();
                out.push(strip_leading_comments(&text));
                start = i + 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    let rest: String = chars[start.min(chars.len())..].iter().collect();
    let rest = strip_leading_comments(&rest);
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// The index after the closing quote of a quoted string starting at `i`.
fn skip_quoted(chars: &[char], i: usize, quote: char) -> usize {
    let mut j = i + 1;
    while j < chars.len() {
        if chars[j] == quote {
            if chars.get(j + 1) == Some(&quote) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    j
}

/// The index after a dollar-quoted string starting at `i` (or after the `$` if it is not one).
fn skip_dollar_quoted(chars: &[char], i: usize) -> usize {
    let mut j = i + 1;
    while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
        j += 1;
    }
    if chars.get(j) != Some(&'$') || chars.get(i + 1).is_some_and(char::is_ascii_digit) {
        return i + 1;
    }
    let tag: Vec<char> = chars[i..=j].to_vec();
    let mut k = j + 1;
    while k + tag.len() <= chars.len() {
        if chars[k..k + tag.len()] == tag[..] {
            return k + tag.len();
        }
        k += 1;
    }
    chars.len()
}

/// The text without leading blank and `--` comment lines, trimmed.
fn strip_leading_comments(text: &str) -> String {
    let mut rest = text.trim_start();
    while rest.starts_with("--") {
        rest = rest
            .split_once('\n')
            .map(|(_, r)| r)
            .unwrap_or("")
            .trim_start();
    }
    rest.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lines() {
        let text = "applying\nshard 0: 0 created, 17 already existed, 0 differ, 0 failed\n\
                    info: shard 1: 3 created, 14 already existed, 1 differ, 2 failed\n";
        let all = summaries(text);
        assert_eq!(all.len(), 2);
        assert_eq!(
            summary_of(text, 1),
            Some(ShardSummary {
                shard: 1,
                created: 3,
                existed: 14,
                differ: 1,
                failed: 2
            })
        );
        assert_eq!(summary_of(text, 0).map(|s| s.existed), Some(17));
        assert_eq!(summary_of(text, 2), None);
    }

    #[test]
    fn dry_run_output_by_shard() {
        let text = "-- shard 0 (shard_0)\nCREATE SCHEMA a;\n-- shard 1 (shard_1)\nCREATE SCHEMA a;\n\
                    CREATE TABLE a.t (id bigint);\nshard 0: 2 created, 0 already existed, 0 differ, 0 failed\n";
        let sections = dry_run_sections(text);
        assert_eq!(sections.len(), 2);
        assert_eq!(sections[&0], "CREATE SCHEMA a;\n");
        assert_eq!(
            statements(&sections[&1]),
            ["CREATE SCHEMA a;", "CREATE TABLE a.t (id bigint);"]
        );
    }

    #[test]
    fn statement_splitting() {
        let sql = "-- a comment; with a semicolon\nCREATE FUNCTION f() RETURNS int LANGUAGE sql AS $_$ SELECT 1; $_$;\n\
                   SELECT 'a;b', \"c;d\" FROM t; /* x; */ SELECT $1;\nSELECT 2";
        assert_eq!(
            statements(sql),
            [
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $_$ SELECT 1; $_$;",
                "SELECT 'a;b', \"c;d\" FROM t;",
                "/* x; */ SELECT $1;",
                "SELECT 2",
            ]
        );
        assert!(statements("  -- nothing\n").is_empty());
    }
}
