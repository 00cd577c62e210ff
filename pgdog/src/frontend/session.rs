//! Session state a client sets (`SET`, `RESET`, `DISCARD ALL`, startup parameters) and the
//! `SET`s that make a pooled server match it. In transaction mode a client's settings travel
//! with it from server to server and never stay behind for the next client.

use std::collections::HashMap;

use crate::backend::server::settings_fingerprint;

/// One change to session settings found in a client's SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `SET name TO value` (value as written: a literal, identifier or list).
    Set(String, String),
    /// `RESET name`.
    Reset(String),
    /// `RESET ALL`.
    ResetAll,
    /// `DEALLOCATE ALL`: every prepared statement of the session is gone.
    DeallocateAll,
    /// `DISCARD ALL`: settings reset and prepared statements gone.
    DiscardAll,
}

impl Change {
    /// Whether it removes the session's prepared statements.
    pub fn drops_prepared_statements(&self) -> bool {
        matches!(self, Change::DeallocateAll | Change::DiscardAll)
    }
}

/// A client's settings: what it sent at startup, and what they are now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionParams {
    startup: HashMap<String, String>,
    current: HashMap<String, String>,
    fingerprint: u64,
}

impl SessionParams {
    /// Settings from the startup packet, as (name, plain value) pairs.
    pub fn from_startup<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let startup: HashMap<String, String> = params
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), quote_literal(v)))
            .collect();
        SessionParams {
            fingerprint: settings_fingerprint(&startup),
            current: startup.clone(),
            startup,
        }
    }

    /// Applies a change the client made (after its transaction committed).
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Set(name, value) => {
                self.current.insert(name.clone(), value.clone());
            }
            Change::Reset(name) => match self.startup.get(name) {
                Some(value) => {
                    self.current.insert(name.clone(), value.clone());
                }
                None => {
                    self.current.remove(name);
                }
            },
            Change::ResetAll | Change::DiscardAll => self.current = self.startup.clone(),
            Change::DeallocateAll => {}
        }
        self.fingerprint = settings_fingerprint(&self.current);
    }

    /// `settings_fingerprint` of the current settings.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The current settings.
    pub fn current(&self) -> &HashMap<String, String> {
        &self.current
    }

    /// The SQL that makes a server whose pgdog-applied settings are `server` (with fingerprint
    /// `server_fingerprint`) match this client, or `None` when they already match.
    pub fn sync_sql(
        &self,
        server: &HashMap<String, String>,
        server_fingerprint: u64,
    ) -> Option<String> {
        if server_fingerprint == self.fingerprint {
            return None;
        }
        let mut sql = String::new();
        for (name, value) in &self.current {
            if server.get(name) != Some(value) {
                sql.push_str(&format!("SET {} TO {value};", quote_ident(name)));
            }
        }
        for name in server.keys() {
            if !self.current.contains_key(name) {
                sql.push_str(&format!("RESET {};", quote_ident(name)));
            }
        }
        (!sql.is_empty()).then_some(sql)
    }
}

/// The settings in a startup `options` value: `-c name=value`, `-cname=value` and
/// `--name=value`, separated by spaces (a backslash escapes the next character).
pub fn options_settings(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut settings = Vec::new();
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        let setting = if word == "-c" {
            words.next()
        } else {
            word.strip_prefix("--")
                .or_else(|| word.strip_prefix("-c"))
                .map(str::to_string)
        };
        if let Some((name, value)) = setting.as_deref().and_then(|s| s.split_once('=')) {
            settings.push((
                name.to_ascii_lowercase().replace('-', "_"),
                value.to_string(),
            ));
        }
    }
    settings
}

/// Applies a change executed on a server to the record of what pgdog set there.
/// Server defaults are the server's own, so RESET simply forgets.
pub fn apply_to_server(server: &mut HashMap<String, String>, change: &Change) {
    match change {
        Change::Set(name, value) => {
            server.insert(name.clone(), value.clone());
        }
        Change::Reset(name) => {
            server.remove(name);
        }
        Change::ResetAll | Change::DiscardAll => server.clear(),
        Change::DeallocateAll => {}
    }
}

pub use crate::quote::literal as quote_literal;

fn quote_ident(name: &str) -> String {
    if name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
    {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// The session changes made by the statements in `sql` (a simple query may hold several).
/// Takes raw bytes (a Query body, with or without its terminating NUL) so the common case (one
/// statement that is not SET/RESET/DISCARD/DEALLOCATE) is decided without decoding the text.
pub fn changes(sql: &[u8]) -> Vec<Change> {
    let end = sql.iter().position(|b| *b == 0).unwrap_or(sql.len());
    let sql = &sql[..end];
    if !may_change_session(sql) {
        return Vec::new();
    }
    let Ok(sql) = std::str::from_utf8(sql) else {
        return Vec::new();
    };
    statements(sql)
        .into_iter()
        .filter_map(|statement| parse_change(&statement))
        .collect()
}

/// Cheap check: could `sql` change session settings? False for a single statement that starts
/// with another keyword; true (then parsed properly) for comments or several statements.
fn may_change_session(sql: &[u8]) -> bool {
    let start = sql
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(sql.len());
    let sql = &sql[start..];
    if sql.starts_with(b"--") || sql.starts_with(b"/*") {
        return true;
    }
    let word_len = sql
        .iter()
        .position(|b| !b.is_ascii_alphabetic())
        .unwrap_or(sql.len());
    let word = &sql[..word_len];
    if [&b"set"[..], b"reset", b"discard", b"deallocate"]
        .iter()
        .any(|k| word.eq_ignore_ascii_case(k))
    {
        return true;
    }
    // Another statement after a semicolon (a semicolon in a literal only costs a full parse).
    sql.iter().position(|b| *b == b';').is_some_and(|i| {
        sql[i + 1..]
            .iter()
            .any(|b| !b.is_ascii_whitespace() && *b != b';' && *b != 0)
    })
}

/// The session change one statement makes, if any.
fn parse_change(statement: &Statement) -> Option<Change> {
    let words = &statement.tokens;
    let word = |i: usize| words.get(i).map(|(w, _)| w.as_str());
    match word(0)? {
        "set" => {
            let mut i = 1;
            match word(i)? {
                "local" => return None,
                "session" => {
                    i += 1;
                    match word(i)? {
                        "characteristics" => return None,
                        "authorization" => {
                            let value = statement.rest(i + 1)?;
                            return Some(set_or_reset("session_authorization", value));
                        }
                        _ => {}
                    }
                }
                "transaction" | "constraints" => return None,
                _ => {}
            }
            if word(i)? == "time" && word(i + 1)? == "zone" {
                let value = statement.rest(i + 2)?;
                return Some(set_or_reset("timezone", value));
            }
            if word(i)? == "role" && word(i + 1) != Some("=") && word(i + 1) != Some("to") {
                return Some(set_or_reset("role", statement.rest(i + 1)?));
            }
            // name may be qualified: a.b
            let mut name = word(i)?.to_string();
            i += 1;
            while word(i) == Some(".") {
                name.push('.');
                name.push_str(word(i + 1)?);
                i += 2;
            }
            match word(i)? {
                "to" | "=" => Some(set_or_reset(&name, statement.rest(i + 1)?)),
                _ => None,
            }
        }
        "reset" => match word(1)? {
            "all" => Some(Change::ResetAll),
            "time" if word(2) == Some("zone") => Some(Change::Reset("timezone".into())),
            "session" if word(2) == Some("authorization") => {
                Some(Change::Reset("session_authorization".into()))
            }
            _ => {
                let mut name = word(1)?.to_string();
                let mut i = 2;
                while word(i) == Some(".") {
                    name.push('.');
                    name.push_str(word(i + 1)?);
                    i += 2;
                }
                Some(Change::Reset(name))
            }
        },
        "discard" if word(1) == Some("all") => Some(Change::DiscardAll),
        "deallocate"
            if word(1) == Some("all") || (word(1) == Some("prepare") && word(2) == Some("all")) =>
        {
            Some(Change::DeallocateAll)
        }
        _ => None,
    }
}

fn set_or_reset(name: &str, value: &str) -> Change {
    if value.eq_ignore_ascii_case("default") {
        Change::Reset(name.to_string())
    } else {
        Change::Set(name.to_string(), value.to_string())
    }
}

/// One statement of a query: its text and leading tokens, each a word (lowercased unless
/// quoted) or a punctuation character, with its byte offset in the statement.
struct Statement<'a> {
    text: &'a str,
    tokens: Vec<(String, usize)>,
}

impl<'a> Statement<'a> {
    /// The statement text from token `i` on, trimmed.
    fn rest(&self, i: usize) -> Option<&'a str> {
        let (_, start) = self.tokens.get(i)?;
        let value = self.text[*start..].trim();
        (!value.is_empty()).then_some(value)
    }
}

/// Splits SQL into statements at top-level `;`, respecting quotes, dollar quotes and comments,
/// and tokenizes the first few words of each.
fn statements(sql: &str) -> Vec<Statement<'_>> {
    const MAX_TOKENS: usize = 8;
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut tokens: Vec<(String, usize)> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let token_start = i;
        match c {
            b';' => {
                out.push(Statement {
                    text: &sql[start..i],
                    tokens: std::mem::take(&mut tokens),
                });
                i += 1;
                start = i;
                continue;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < bytes.len() {
                    if bytes[i..].starts_with(b"/*") {
                        depth += 1;
                        i += 2;
                    } else if bytes[i..].starts_with(b"*/") {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            b'\'' => {
                let escapes = i > 0 && (bytes[i - 1] == b'e' || bytes[i - 1] == b'E');
                i += 1;
                while i < bytes.len() {
                    if escapes && bytes[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if bytes[i] == b'\'' {
                        if bytes.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
                push_token(&mut tokens, MAX_TOKENS, "'", token_start - start);
                continue;
            }
            b'"' => {
                i += 1;
                let begin = i;
                while i < bytes.len() && !(bytes[i] == b'"' && bytes.get(i + 1) != Some(&b'"')) {
                    i += if bytes[i] == b'"' { 2 } else { 1 };
                }
                let ident = sql
                    .get(begin..i.min(bytes.len()))
                    .unwrap_or("")
                    .replace("\"\"", "\"");
                i += 1;
                push_token(&mut tokens, MAX_TOKENS, &ident, token_start - start);
                continue;
            }
            b'$' => {
                // $tag$ ... $tag$ or a parameter $1.
                let tag_end = bytes[i + 1..]
                    .iter()
                    .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
                    .map(|p| i + 1 + p);
                if let Some(end) = tag_end.filter(|e| bytes[*e] == b'$') {
                    let tag = &sql[i..=end];
                    if !tag[1..tag.len() - 1]
                        .bytes()
                        .next()
                        .is_some_and(|b| b.is_ascii_digit())
                    {
                        let body_start = end + 1;
                        i = sql[body_start..]
                            .find(tag)
                            .map(|p| body_start + p + tag.len())
                            .unwrap_or(bytes.len());
                        push_token(&mut tokens, MAX_TOKENS, "$", token_start - start);
                        continue;
                    }
                }
                i += 1;
                continue;
            }
            c if c.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || bytes[i] == b'_'
                        || bytes[i] == b'$'
                        || bytes[i] >= 0x80)
                {
                    i += 1;
                }
                let word = sql[token_start..i].to_lowercase();
                push_token(&mut tokens, MAX_TOKENS, &word, token_start - start);
                continue;
            }
            _ => {
                i += 1;
                let punct = (c as char).to_string();
                push_token(&mut tokens, MAX_TOKENS, &punct, token_start - start);
                continue;
            }
        }
    }
    if start < bytes.len() {
        out.push(Statement {
            text: &sql[start..],
            tokens,
        });
    }
    out
}

fn push_token(tokens: &mut Vec<(String, usize)>, max: usize, token: &str, offset: usize) {
    if tokens.len() < max {
        tokens.push((token.to_string(), offset));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: &str, v: &str) -> Change {
        Change::Set(n.into(), v.into())
    }

    #[test]
    fn recognises_set_forms() {
        let cases: &[(&[u8], Change)] = &[
            (b"SET search_path TO a, b", set("search_path", "a, b")),
            (
                b"set statement_timeout = '5s';",
                set("statement_timeout", "'5s'"),
            ),
            (b"SET SESSION work_mem TO 1024", set("work_mem", "1024")),
            (b"SET TIME ZONE 'UTC'", set("timezone", "'UTC'")),
            (
                b"SET application_name = DEFAULT",
                Change::Reset("application_name".into()),
            ),
            (b"SET myapp.tenant = '42'", set("myapp.tenant", "'42'")),
            (b"SET ROLE bob", set("role", "bob")),
            (b"SET \"Weird\" TO 1", set("Weird", "1")),
        ];
        for (sql, expected) in cases {
            assert_eq!(
                &changes(sql),
                std::slice::from_ref(expected),
                "{}",
                String::from_utf8_lossy(sql)
            );
        }
    }

    #[test]
    fn startup_options() {
        assert_eq!(
            options_settings(
                "-c search_path=a,b  -cstatement_timeout=5s --work-mem=8MB -c x=has\\ space"
            ),
            vec![
                ("search_path".to_string(), "a,b".to_string()),
                ("statement_timeout".to_string(), "5s".to_string()),
                ("work_mem".to_string(), "8MB".to_string()),
                ("x".to_string(), "has space".to_string()),
            ]
        );
        assert!(options_settings("").is_empty());
        assert!(options_settings("-c").is_empty());
    }

    #[test]
    fn fast_path_skips_ordinary_statements() {
        assert!(!may_change_session(b"SELECT 1"));
        assert!(!may_change_session(b"  UPDATE t SET x = 1;  "));
        assert!(may_change_session(b" set x = 1"));
        assert!(may_change_session(b"SELECT 1; SET x = 1"));
        assert!(may_change_session(b"/* hi */ SET x = 1"));
        assert_eq!(changes(b"DEALLOCATE ALL"), vec![Change::DeallocateAll]);
        assert_eq!(
            changes(b"SET search_path TO a, b\0"),
            vec![set("search_path", "a, b")]
        );
        assert_eq!(
            changes(b"deallocate prepare all"),
            vec![Change::DeallocateAll]
        );
    }

    #[test]
    fn ignores_transaction_scoped_and_other_statements() {
        assert!(changes(b"SET LOCAL work_mem = 1").is_empty());
        assert!(changes(b"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE").is_empty());
        assert!(changes(b"SELECT 'SET x = 1'").is_empty());
        assert!(changes(b"UPDATE settings SET x = 1").is_empty());
        assert!(changes(b"-- SET x = 1\nSELECT 1").is_empty());
        assert!(changes(b"SELECT $$;SET x = 1;$$").is_empty());
    }

    #[test]
    fn several_statements_and_resets() {
        assert_eq!(
            changes(b"BEGIN; SET a.b = 1; RESET c; RESET ALL; DISCARD ALL; DEALLOCATE ALL; COMMIT"),
            vec![
                set("a.b", "1"),
                Change::Reset("c".into()),
                Change::ResetAll,
                Change::DiscardAll,
                Change::DeallocateAll
            ]
        );
    }

    #[test]
    fn sync_sql_sets_and_resets() {
        let mut client = SessionParams::from_startup([("application_name", "app")]);
        client.apply(&set("search_path", "x"));
        let mut server = HashMap::new();
        server.insert("work_mem".to_string(), "64".to_string());
        let sql = client
            .sync_sql(&server, settings_fingerprint(&server))
            .unwrap();
        assert!(sql.contains("SET application_name TO 'app';"));
        assert!(sql.contains("SET search_path TO x;"));
        assert!(sql.contains("RESET work_mem;"));
        for change in [
            set("search_path", "x"),
            set("application_name", "'app'"),
            Change::Reset("work_mem".into()),
        ] {
            apply_to_server(&mut server, &change);
        }
        assert_eq!(
            client.sync_sql(&server, settings_fingerprint(&server)),
            None
        );
        client.apply(&Change::ResetAll);
        assert_eq!(
            client.current().get("application_name").map(String::as_str),
            Some("'app'")
        );
        assert!(!client.current().contains_key("search_path"));
    }
}
