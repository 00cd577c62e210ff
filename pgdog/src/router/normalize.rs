//! Literal extraction for simple queries, so the router can reuse one analysis for every text
//! that differs only in its constants (`... WHERE id = 1`, `... WHERE id = 2`).
//!
//! [`normalize`] scans a query once (no parse) and replaces numeric literals and plain
//! `'...'` strings that stand as values with `$1`, `$2`, ...; the values are returned
//! decoded, to be handed to the planner as text parameters. The scanner only needs to be safe,
//! not complete: whenever it meets something it does not fully understand (dollar quoting,
//! `E'...'` and other prefixed strings, positional parameters, odd numbers) it gives up and the
//! caller analyses the original text. Strings right after an identifier or keyword are kept,
//! since they may be typed literals (`interval '1 day'`, `date '2024-01-01'`) whose value cannot
//! be a parameter; comments are kept so routing comments still work.

/// A query with its constants taken out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    /// The text with `$n` in place of each literal.
    pub text: String,
    /// The literals, in `$n` order, decoded (string quotes and doubled quotes removed).
    pub literals: Vec<String>,
}

/// What the last significant token was, to tell a unary minus and typed literals apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Last {
    /// Start of text, `(`, `,`, `[`, `;` or an operator: a value may follow.
    ValueStart,
    /// An identifier or keyword (a string after it may be a typed literal).
    Word,
    /// A literal, parameter, `)` or `]`: an operator follows, not a value.
    Operand,
}

/// `sql` with its literals replaced, or `None` when the text has nothing to replace or uses
/// syntax the scanner does not handle.
pub fn normalize(sql: &str) -> Option<Normalized> {
    let bytes = sql.as_bytes();
    let mut text = String::with_capacity(sql.len() + 8);
    let mut literals = Vec::new();
    let mut last = Last::ValueStart;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => {
                text.push(c as char);
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                let end = sql[i..].find('\n').map(|n| i + n).unwrap_or(bytes.len());
                text.push_str(&sql[i..end]);
                i = end;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let end = block_comment_end(bytes, i)?;
                text.push_str(&sql[i..end]);
                i = end;
            }
            b'\'' => {
                let (value, end) = string_literal(sql, i)?;
                if last == Last::Word {
                    // Possibly a typed literal: kept as written.
                    text.push_str(&sql[i..end]);
                } else {
                    literals.push(value);
                    text.push('$');
                    text.push_str(&literals.len().to_string());
                }
                last = Last::Operand;
                i = end;
            }
            b'"' => {
                let end = quoted_identifier_end(bytes, i)?;
                text.push_str(&sql[i..end]);
                last = Last::Word;
                i = end;
            }
            b'$' => return None,
            b'0'..=b'9' => {
                let end = number_end(bytes, i)?;
                let mut value = sql[i..end].to_string();
                // A unary minus right before the number belongs to it (the parser folds it).
                if text.ends_with('-') && minus_is_unary(&text) {
                    text.pop();
                    value.insert(0, '-');
                }
                literals.push(value);
                text.push('$');
                text.push_str(&literals.len().to_string());
                last = Last::Operand;
                i = end;
            }
            b'.' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                if last == Last::Word || last == Last::Operand {
                    // `t.1`? Not a literal we understand.
                    return None;
                }
                let end = number_end(bytes, i)?;
                literals.push(sql[i..end].to_string());
                text.push('$');
                text.push_str(&literals.len().to_string());
                last = Last::Operand;
                i = end;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || bytes[i] == b'_'
                        || bytes[i] == b'$'
                        || bytes[i] >= 0x80)
                {
                    i += 1;
                }
                // E'..', B'..', X'..', U&'..', N'..': prefixed strings are left alone.
                if bytes.get(i) == Some(&b'\'')
                    || (bytes.get(i) == Some(&b'&') && bytes.get(i + 1) == Some(&b'\''))
                {
                    let word = &sql[start..i];
                    if word.len() == 1 || word.eq_ignore_ascii_case("u") {
                        return None;
                    }
                }
                text.push_str(&sql[start..i]);
                last = Last::Word;
            }
            b'(' | b',' | b'[' | b';' => {
                text.push(c as char);
                last = Last::ValueStart;
                i += 1;
            }
            b')' | b']' => {
                text.push(c as char);
                last = Last::Operand;
                i += 1;
            }
            b'+' | b'-' | b'*' | b'/' | b'<' | b'>' | b'=' | b'~' | b'!' | b'@' | b'#' | b'%'
            | b'^' | b'&' | b'|' | b'`' | b'?' => {
                text.push(c as char);
                last = Last::ValueStart;
                i += 1;
            }
            b':' => {
                // `::type` casts: the type name follows as a word.
                text.push(':');
                last = Last::ValueStart;
                i += 1;
            }
            b'.' => {
                text.push('.');
                last = Last::ValueStart;
                i += 1;
            }
            _ => {
                text.push(c as char);
                i += 1;
            }
        }
    }
    if literals.is_empty() {
        return None;
    }
    Some(Normalized { text, literals })
}

/// Characters PostgreSQL operators are made of.
const OPERATOR_CHARS: [char; 17] = [
    '+', '-', '*', '/', '<', '>', '=', '~', '!', '@', '#', '%', '^', '&', '|', '`', '?',
];

/// Keywords after which a minus is unary.
const VALUE_KEYWORDS: [&str; 19] = [
    "select",
    "where",
    "and",
    "or",
    "not",
    "then",
    "else",
    "when",
    "values",
    "limit",
    "offset",
    "by",
    "in",
    "is",
    "like",
    "between",
    "set",
    "return",
    "returning",
];

/// Whether the `-` at the end of `text` is a unary minus: alone (not part of a longer
/// operator) and after something that is not an operand.
fn minus_is_unary(text: &str) -> bool {
    let before_minus = &text[..text.len() - 1];
    if before_minus.ends_with(OPERATOR_CHARS) {
        // Part of a longer operator: left to the parser.
        return false;
    }
    let before = before_minus.trim_end();
    match before.chars().last() {
        None | Some('(' | ',' | '[' | ';') => true,
        Some(c) if OPERATOR_CHARS.contains(&c) => true,
        Some(c) if c.is_ascii_alphabetic() => {
            let word_start = before
                .rfind(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                .map(|p| p + 1)
                .unwrap_or(0);
            let word = &before[word_start..];
            VALUE_KEYWORDS.iter().any(|k| word.eq_ignore_ascii_case(k))
        }
        _ => false,
    }
}

/// The end of a `/* ... */` comment starting at `start` (comments nest in PostgreSQL).
fn block_comment_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0;
    let mut i = start;
    while i + 1 < bytes.len() {
        if bytes[i] == b'/' && bytes[i + 1] == b'*' {
            depth += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return Some(i);
            }
        } else {
            i += 1;
        }
    }
    None
}

/// A standard `'...'` string at `start`: its value and the index after it. Two strings
/// separated by a newline continue each other in SQL: that is left to the parser (`None`).
fn string_literal(sql: &str, start: usize) -> Option<(String, usize)> {
    let bytes = sql.as_bytes();
    let mut value = String::new();
    let mut i = start + 1;
    let mut from = i;
    loop {
        let quote = from + sql[from..].find('\'')?;
        value.push_str(&sql[from..quote]);
        if bytes.get(quote + 1) == Some(&b'\'') {
            value.push('\'');
            i = quote + 2;
            from = i;
            continue;
        }
        i = quote + 1;
        break;
    }
    // 'a'
    // 'b' is one string in SQL: not handled here.
    let rest = &sql[i..];
    let trimmed = rest.trim_start_matches([' ', '\t', '\r', '\x0c']);
    if trimmed.starts_with('\n') && trimmed.trim_start().starts_with('\'') {
        return None;
    }
    Some((value, i))
}

/// The end of a `"..."` identifier at `start`.
fn quoted_identifier_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == b'"' {
            if bytes.get(i + 1) == Some(&b'"') {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// The end of a decimal number at `start` (`12`, `1.5`, `.5`, `1e-3`); `None` for forms left to
/// the parser (hex/octal/binary, underscores, a number running into letters).
fn number_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    let digits = |i: &mut usize| {
        while *i < bytes.len() && bytes[*i].is_ascii_digit() {
            *i += 1;
        }
    };
    digits(&mut i);
    if bytes.get(i) == Some(&b'.') && bytes.get(i + 1) != Some(&b'.') {
        i += 1;
        digits(&mut i);
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(bytes.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if bytes.get(j).is_some_and(u8::is_ascii_digit) {
            i = j;
            digits(&mut i);
        } else {
            return None;
        }
    }
    match bytes.get(i) {
        Some(c) if c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.' || *c >= 0x80 => None,
        _ => Some(i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(sql: &str) -> Option<(String, Vec<String>)> {
        normalize(sql).map(|n| (n.text, n.literals))
    }

    #[test]
    fn numbers_and_strings_become_parameters() {
        assert_eq!(
            n("SELECT abalance FROM pgbench_accounts WHERE aid = 12345;"),
            Some((
                "SELECT abalance FROM pgbench_accounts WHERE aid = $1;".into(),
                vec!["12345".into()]
            ))
        );
        assert_eq!(
            n("UPDATE t SET v = v + -5, name = 'it''s' WHERE id IN (1, -2, 3.5e2)"),
            Some((
                "UPDATE t SET v = v + $1, name = $2 WHERE id IN ($3, $4, $5)".into(),
                vec![
                    "-5".into(),
                    "it's".into(),
                    "1".into(),
                    "-2".into(),
                    "3.5e2".into()
                ]
            ))
        );
    }

    #[test]
    fn binary_minus_stays_an_operator() {
        assert_eq!(
            n("SELECT a -1, b - 2 FROM t"),
            Some((
                "SELECT a -$1, b - $2 FROM t".into(),
                vec!["1".into(), "2".into()]
            ))
        );
        assert_eq!(
            n("SELECT * FROM t WHERE id = -7"),
            Some(("SELECT * FROM t WHERE id = $1".into(), vec!["-7".into()]))
        );
    }

    #[test]
    fn typed_literals_comments_and_identifiers_are_kept() {
        assert_eq!(
            n("/* pgdog_shard: 1 */ SELECT interval '1 day', \"col 1\", t1.x FROM t1 -- 5\nWHERE k = 'a'"),
            Some((
                "/* pgdog_shard: 1 */ SELECT interval '1 day', \"col 1\", t1.x FROM t1 -- 5\nWHERE k = $1".into(),
                vec!["a".into()]
            ))
        );
    }

    #[test]
    fn unsupported_syntax_gives_up() {
        for sql in [
            "SELECT $1",
            "SELECT $$x$$",
            "SELECT E'a\\n'",
            "SELECT x FROM t WHERE b = B'101'",
            "SELECT 0x1F",
            "SELECT 1_000",
            "SELECT 'a'\n'b'",
            "SELECT 'unterminated",
            "SELECT 1 /* open",
            "SELECT 1",
        ] {
            if sql == "SELECT 1" {
                assert!(normalize(sql).is_some());
                continue;
            }
            assert_eq!(normalize(sql), None, "{sql}");
        }
        assert_eq!(normalize("SELECT now()"), None);
    }
}
