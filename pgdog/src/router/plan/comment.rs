//! Manual routing comments: `/* pgdog_shard: N */` sends a statement to shard N,
//! `/* pgdog_sharding_key: V */` to the shard of the sharding key value V (`--` line comments
//! work too; V may be quoted with `'` or `"`). Comments are not in the parse tree, so the text
//! is scanned with PostgreSQL's own scanner (string literals and quoted identifiers are not
//! comments).

use pg_query::protobuf::Token;

/// What a routing comment asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manual {
    /// `pgdog_shard: N`.
    Shard(usize),
    /// `pgdog_sharding_key: V`.
    ShardingKey(String),
    /// `pgdog_shard:` with something that is not a shard number.
    BadShard(String),
}

/// The routing comments of `sql` with their byte offsets, in text order. Empty when the text
/// has none (or does not scan).
pub(super) fn routing_comments(sql: &str) -> Vec<(usize, Manual)> {
    if !sql.contains("pgdog_shard") {
        return Vec::new();
    }
    let Ok(scanned) = pg_query::scan(sql) else {
        return Vec::new();
    };
    scanned
        .tokens
        .iter()
        .filter(|token| {
            token.token == Token::CComment as i32 || token.token == Token::SqlComment as i32
        })
        .filter_map(|token| {
            let start = usize::try_from(token.start).ok()?;
            let end = usize::try_from(token.end).ok()?;
            let comment = sql.get(start..end)?;
            parse_comment(comment).map(|manual| (start, manual))
        })
        .collect()
}

/// The routing request in one comment's text (with its `/* */` or `--`).
fn parse_comment(comment: &str) -> Option<Manual> {
    let body = if let Some(block) = comment.strip_prefix("/*") {
        block.strip_suffix("*/").unwrap_or(block)
    } else {
        comment.strip_prefix("--").unwrap_or(comment)
    };
    let mut rest = body;
    while let Some(at) = rest.find("pgdog_shard") {
        let after = &rest[at + "pgdog_shard".len()..];
        if let Some(key) = after.strip_prefix("ing_key") {
            if let Some(value) = value_after_separator(key) {
                return Some(Manual::ShardingKey(value));
            }
        } else if let Some(value) = value_after_separator(after) {
            return Some(match value.parse::<usize>() {
                Ok(shard) => Manual::Shard(shard),
                Err(_) => Manual::BadShard(value),
            });
        }
        rest = after;
    }
    None
}

/// The value after `:` or `=` (spaces allowed around it): a quoted string or the next word.
fn value_after_separator(text: &str) -> Option<String> {
    let text = text.trim_start();
    let text = text
        .strip_prefix(':')
        .or_else(|| text.strip_prefix('='))?
        .trim_start();
    let mut chars = text.chars();
    match chars.next()? {
        quote @ ('\'' | '"') => {
            let mut value = String::new();
            let mut chars = chars.peekable();
            while let Some(c) = chars.next() {
                if c == quote {
                    // A doubled quote stands for one.
                    if chars.peek() == Some(&quote) {
                        chars.next();
                    } else {
                        return Some(value);
                    }
                }
                value.push(c);
            }
            None
        }
        _ => {
            let value: String = text
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != ',' && *c != '*')
                .collect();
            (!value.is_empty()).then_some(value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(sql: &str) -> Option<Manual> {
        routing_comments(sql).into_iter().next().map(|(_, m)| m)
    }

    #[test]
    fn block_and_line_comments() {
        assert_eq!(
            first("/* pgdog_shard: 1 */ SELECT 1"),
            Some(Manual::Shard(1))
        );
        assert_eq!(
            first("SELECT 1 /*pgdog_shard:12*/"),
            Some(Manual::Shard(12))
        );
        assert_eq!(
            first("SELECT 1 -- pgdog_shard = 3\n"),
            Some(Manual::Shard(3))
        );
        assert_eq!(
            first("SELECT /* app: x, pgdog_shard: 2 */ 1"),
            Some(Manual::Shard(2))
        );
        assert_eq!(
            first("/* pgdog_sharding_key: 1234 */ SELECT 1"),
            Some(Manual::ShardingKey("1234".into()))
        );
        assert_eq!(
            first("/* pgdog_sharding_key: 'a b''c' */ SELECT 1"),
            Some(Manual::ShardingKey("a b'c".into()))
        );
        assert_eq!(
            first("/* pgdog_sharding_key:\"x\" */ SELECT 1"),
            Some(Manual::ShardingKey("x".into()))
        );
        assert_eq!(
            first("/* pgdog_shard: x */ SELECT 1"),
            Some(Manual::BadShard("x".into()))
        );
        let both = routing_comments("SELECT 1; /* pgdog_shard: 0 */ SELECT 2");
        assert_eq!(both, vec![(10, Manual::Shard(0))]);
    }

    #[test]
    fn not_in_literals_or_without_value() {
        assert_eq!(first("SELECT '/* pgdog_shard: 1 */'"), None);
        assert_eq!(first("SELECT \"/* pgdog_shard: 1 */\" FROM t"), None);
        assert_eq!(first("SELECT $$ -- pgdog_shard: 1 $$"), None);
        assert_eq!(first("/* pgdog_shard */ SELECT 1"), None);
        assert_eq!(first("/* pgdog_shards: 1 */ SELECT 1"), None);
        assert_eq!(first("SELECT 'unterminated /* pgdog_shard: 1 */"), None);
        assert_eq!(first("SELECT 1"), None);
    }
}
