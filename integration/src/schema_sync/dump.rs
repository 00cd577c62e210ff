//! `pg_dump --schema-only` output as a set of entries, so tests can compare the schema of two
//! databases object by object.
//!
//! pg_dump starts every object with a header
//! `-- Name: X; Type: Y; Schema: Z; Owner: -`. An entry is the text after its header up to the
//! next one, without blank lines, `--` comment lines, psql meta-commands (`\restrict` /
//! `\unrestrict`, whose key is random per dump) and the `SET` / `set_config` prologue.

use std::collections::BTreeMap;
use std::fmt;
use std::process::Command;

/// The options every comparison dump is taken with.
pub const DUMP_OPTIONS: [&str; 6] = [
    "--schema-only",
    "--no-owner",
    "--no-privileges",
    "--no-comments",
    "--no-publications",
    "--no-subscriptions",
];

/// Which object an entry is: the `Name`, `Type` and `Schema` of its header (`-` for none).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryKey {
    /// `Type`, e.g. `TABLE`, `FK CONSTRAINT`, `INDEX ATTACH`.
    pub kind: String,
    /// `Schema`, `-` for objects outside schemas (extensions, schemas themselves).
    pub schema: String,
    /// `Name`, e.g. `customers`, `orders orders_pkey`, `normalize_sku(text)`.
    pub name: String,
}

impl EntryKey {
    /// A key from its three parts.
    pub fn new(kind: &str, schema: &str, name: &str) -> EntryKey {
        EntryKey {
            kind: kind.to_string(),
            schema: schema.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for EntryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}.{}", self.kind, self.schema, self.name)
    }
}

/// The entries of one schema dump, keyed by header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dump {
    /// Entry text by key (two entries with the same header are joined by a newline).
    pub entries: BTreeMap<EntryKey, String>,
}

impl Dump {
    /// Splits pg_dump's plain-format output into entries.
    pub fn parse(text: &str) -> Dump {
        let mut entries: BTreeMap<EntryKey, String> = BTreeMap::new();
        let mut current: Option<(EntryKey, Vec<&str>)> = None;
        let mut finish = |entry: Option<(EntryKey, Vec<&str>)>| {
            if let Some((key, lines)) = entry {
                let body = lines.join("\n");
                entries
                    .entry(key)
                    .and_modify(|old| {
                        old.push('\n');
                        old.push_str(&body);
                    })
                    .or_insert(body);
            }
        };
        for line in text.lines() {
            if let Some(key) = parse_header(line) {
                finish(current.take());
                current = Some((key, Vec::new()));
                continue;
            }
            if is_noise(line) {
                continue;
            }
            if let Some((_, lines)) = current.as_mut() {
                lines.push(line.trim_end());
            }
        }
        finish(current.take());
        Dump { entries }
    }

    /// The text of one entry.
    pub fn get(&self, kind: &str, schema: &str, name: &str) -> Option<&str> {
        self.entries
            .get(&EntryKey::new(kind, schema, name))
            .map(String::as_str)
    }

    /// Whether the dump has an entry.
    pub fn has(&self, kind: &str, schema: &str, name: &str) -> bool {
        self.get(kind, schema, name).is_some()
    }

    /// Whether there are no entries at all (an empty database).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries for which `keep` is true.
    pub fn filter(&self, mut keep: impl FnMut(&EntryKey, &str) -> bool) -> Dump {
        Dump {
            entries: self
                .entries
                .iter()
                .filter(|(key, body)| keep(key, body))
                .map(|(key, body)| (key.clone(), body.clone()))
                .collect(),
        }
    }

    /// The dump with line `from` of entry `kind schema.name` replaced by `to` (removed when
    /// `to` is `None`). Panics when the entry or the line is missing: an expectation that no
    /// longer fits the fixture must fail loudly.
    pub fn edit_line(
        mut self,
        (kind, schema, name): (&str, &str, &str),
        from: &str,
        to: Option<&str>,
    ) -> Dump {
        let key = EntryKey::new(kind, schema, name);
        let Some(body) = self.entries.get_mut(&key) else {
            panic!("the dump has no entry {key}; entries:\n{}", self.key_list());
        };
        let mut found = false;
        let lines: Vec<&str> = body
            .lines()
            .filter_map(|line| {
                if !found && line == from {
                    found = true;
                    to
                } else {
                    Some(line)
                }
            })
            .collect();
        assert!(found, "entry {key} has no line {from:?}:\n{body}");
        *body = lines.join("\n");
        self
    }

    /// Every key, one a line.
    pub fn key_list(&self) -> String {
        self.entries
            .keys()
            .map(|k| format!("  {k}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// How this dump (`actual`) differs from `expected`: missing entries, unexpected entries,
    /// and entries whose text differs (both texts shown). Empty when they are equal.
    pub fn differences(&self, expected: &Dump) -> Vec<String> {
        let mut out = Vec::new();
        for (key, want) in &expected.entries {
            match self.entries.get(key) {
                None => out.push(format!("missing {key}:\n{}", indent(want))),
                Some(got) if got != want => out.push(format!(
                    "differs {key}:\n  expected:\n{}\n  actual:\n{}",
                    indent(want),
                    indent(got)
                )),
                Some(_) => {}
            }
        }
        for (key, got) in &self.entries {
            if !expected.entries.contains_key(key) {
                out.push(format!("unexpected {key}:\n{}", indent(got)));
            }
        }
        out
    }

    /// Panics listing every difference from `expected`; `what` names the dump.
    pub fn assert_same(&self, expected: &Dump, what: &str) {
        let differences = self.differences(expected);
        assert!(
            differences.is_empty(),
            "{what}: {} difference(s) from the expected schema:\n\n{}",
            differences.len(),
            differences.join("\n\n")
        );
    }
}

/// The key of a `-- Name: X; Type: Y; Schema: Z; Owner: O` header line.
fn parse_header(line: &str) -> Option<EntryKey> {
    let rest = line.strip_prefix("-- Name: ")?;
    let (rest, _owner) = rest.rsplit_once("; Owner: ")?;
    let (rest, schema) = rest.rsplit_once("; Schema: ")?;
    let (name, kind) = rest.rsplit_once("; Type: ")?;
    Some(EntryKey::new(kind, schema, name))
}

/// Lines that carry no schema: blank, `--` comments, psql meta-commands, the SET prologue.
fn is_noise(line: &str) -> bool {
    let trimmed = line.trim();
    trimmed.is_empty()
        || trimmed == "--"
        || trimmed.starts_with("-- ")
        || trimmed.starts_with("\\restrict")
        || trimmed.starts_with("\\unrestrict")
        || trimmed.starts_with("SET ")
        || trimmed.starts_with("SELECT pg_catalog.set_config(")
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `pg_dump` with [`DUMP_OPTIONS`] of `database` on 127.0.0.1:`port` as `user`, parsed.
/// Panics with pg_dump's error output when it fails.
pub fn pg_dump(port: u16, user: &str, password: &str, database: &str) -> Dump {
    Dump::parse(&pg_dump_text(port, user, password, database))
}

/// The raw text of [`pg_dump`].
pub fn pg_dump_text(port: u16, user: &str, password: &str, database: &str) -> String {
    let binary = crate::tools::pg_tool("pg_dump");
    let output = Command::new(&binary)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", user])
        .args(["-d", database])
        .args(DUMP_OPTIONS)
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {binary}: {e}"));
    assert!(
        output.status.success(),
        "pg_dump of {database} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "--\n-- PostgreSQL database dump\n--\n\n\\restrict abc123\n\n\
        SET statement_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n\n\
        --\n-- Name: Sales; Type: SCHEMA; Schema: -; Owner: -\n--\n\nCREATE SCHEMA \"Sales\";\n\n\n\
        --\n-- Name: t; Type: TABLE; Schema: Sales; Owner: -\n--\n\nCREATE TABLE \"Sales\".t (\n    id integer NOT NULL\n);\n\n\
        --\n-- Name: t t_pkey; Type: CONSTRAINT; Schema: Sales; Owner: -\n--\n\n\
        ALTER TABLE ONLY \"Sales\".t\n    ADD CONSTRAINT t_pkey PRIMARY KEY (id);\n\n\
        --\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc123\n";

    #[test]
    fn parses_entries_without_noise() {
        let dump = Dump::parse(SAMPLE);
        assert_eq!(dump.entries.len(), 3, "{}", dump.key_list());
        assert_eq!(
            dump.get("SCHEMA", "-", "Sales"),
            Some("CREATE SCHEMA \"Sales\";")
        );
        assert_eq!(
            dump.get("TABLE", "Sales", "t"),
            Some("CREATE TABLE \"Sales\".t (\n    id integer NOT NULL\n);")
        );
        assert_eq!(
            dump.get("CONSTRAINT", "Sales", "t t_pkey"),
            Some("ALTER TABLE ONLY \"Sales\".t\n    ADD CONSTRAINT t_pkey PRIMARY KEY (id);")
        );
    }

    #[test]
    fn differences_and_edits() {
        let dump = Dump::parse(SAMPLE);
        assert!(dump.differences(&dump).is_empty());
        let edited = dump.clone().edit_line(
            ("TABLE", "Sales", "t"),
            "    id integer NOT NULL",
            Some("    id bigint NOT NULL"),
        );
        let differences = edited.differences(&dump);
        assert_eq!(differences.len(), 1, "{differences:?}");
        assert!(differences[0].starts_with("differs TABLE Sales.t"));
        let fewer = dump.filter(|key, _| key.kind != "SCHEMA");
        let differences = fewer.differences(&dump);
        assert_eq!(differences.len(), 1, "{differences:?}");
        assert!(differences[0].starts_with("missing SCHEMA -.Sales"));
        assert!(dump.differences(&fewer)[0].starts_with("unexpected SCHEMA -.Sales"));
    }
}
