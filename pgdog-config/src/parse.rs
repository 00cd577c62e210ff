//! Parsing TOML text into config types, turning `toml`'s multi-line errors
//! into one-line [`ParseError`]s that name the file, line, key and fix.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{ConfigError, ParseError};

/// Parses `text` (the contents of `file`) into `T`.
pub(crate) fn parse<T: DeserializeOwned>(text: &str, file: &Path) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|err| ConfigError::Parse(describe(text, file, &err)))
}

/// Builds a one-line [`ParseError`] from a `toml` error.
fn describe(text: &str, file: &Path, err: &toml::de::Error) -> ParseError {
    let raw = err.message();
    let mut error = ParseError {
        file: file.to_path_buf(),
        line: None,
        column: None,
        key: None,
        message: String::new(),
    };
    let mut context = None;
    let mut place = None;
    if let Some(offset) = err.span().map(|span| span.start.min(text.len())) {
        let before = text.get(..offset).unwrap_or(text);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        error.line = Some(before.matches('\n').count() + 1);
        error.column = Some(before[line_start..].chars().count() + 1);
        if let Some(found) = locate(text, offset, unknown_field(raw).is_some()) {
            place = Some(found.place);
            context = Some(found.path[..found.path.len() - 1].to_vec());
            error.key = Some(render(&found.path));
        }
    }
    error.message = match unknown_field(raw) {
        Some(valid) => {
            let list = if valid.is_empty() {
                "this table takes no keys".to_string()
            } else {
                let place = match context.as_deref() {
                    None => String::new(),
                    Some([]) => " at the top level".to_string(),
                    Some(path) if path.last().is_some_and(|last| last.index.is_some()) => {
                        let names: Vec<&str> = path.iter().map(|s| s.name.as_str()).collect();
                        format!(" in [[{}]]", names.join("."))
                    }
                    Some([only]) => format!(" in [{}]", only.name),
                    Some(path) => format!(" in {}", render(path)),
                };
                format!("valid keys{place} are {}", valid.join(", "))
            };
            format!("unknown key; {list}; remove it or fix its spelling")
        }
        None => humanize(raw, place),
    };
    error
}

/// If `message` is serde's "unknown field" error, the list of valid keys.
pub(crate) fn unknown_field(message: &str) -> Option<Vec<String>> {
    let rest = message.strip_prefix("unknown field `")?;
    let (_, expected) = rest.split_once('`')?;
    Some(
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect(),
    )
}

/// Rewrites serde/toml jargon into plain words and adds a fix.
fn humanize(message: &str, place: Option<Place>) -> String {
    let mut out = quote_backticks(&message.replace('\n', "; "));
    for (from, to) in [
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected u32", "expected a whole number (0 or more)"),
        ("expected u64", "expected a whole number (0 or more)"),
        ("expected usize", "expected a whole number (0 or more)"),
        ("expected path string", "expected a string (a file path)"),
        ("expected a sequence", "expected an array"),
        ("expected a boolean", "expected true or false"),
        ("invalid type: map", "invalid type: table"),
        ("invalid type: sequence", "invalid type: array"),
        ("wanted string or table", "invalid type, expected a string"),
        ("missing field", "missing key"),
    ] {
        out = out.replace(from, to);
    }
    if let Some(at) = out.find("expected struct ") {
        let end = out[at..].find([',', ';']).map_or(out.len(), |i| at + i);
        out.replace_range(at..end, "expected a table");
    }
    let fix = if place == Some(Place::Header) && out.contains("expected an array") {
        "write the header with double brackets, [[name]], once per entry"
    } else if out.starts_with("unknown variant") {
        "use one of those values"
    } else if out.starts_with("invalid type") || out.starts_with("invalid value") {
        "fix the value"
    } else if out.contains("duplicate key") {
        "remove one of them"
    } else if out.starts_with("missing key") {
        "add it"
    } else {
        // A syntax error listing the tokens it expected: "a, b" -> "a or b".
        if let Some(at) = out.rfind("expected ") {
            if let Some(comma) = out[at..].rfind(", ") {
                out.replace_range(at + comma..at + comma + 2, " or ");
            }
        }
        if place == Some(Place::Value) {
            "fix the TOML syntax (text values need double quotes)"
        } else {
            "fix the TOML syntax"
        }
    };
    format!("{out}; {fix}")
}

/// Replaces `x` with "x", or with plain x when it is a number or boolean.
fn quote_backticks(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for (i, part) in message.split('`').enumerate() {
        let plain = part.parse::<f64>().is_ok() || part == "true" || part == "false";
        if i % 2 == 0 || plain {
            out.push_str(part);
        } else {
            out.push('"');
            out.push_str(part);
            out.push('"');
        }
    }
    out
}

/// One step of a key path: a key, and an index for `[[array]]` entries.
#[derive(Debug, Clone, PartialEq)]
struct Segment {
    name: String,
    index: Option<usize>,
}

/// Renders a key path as `databases[1].port`.
fn render(path: &[Segment]) -> String {
    let mut out = String::new();
    for segment in path {
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(&segment.name);
        if let Some(index) = segment.index {
            out.push_str(&format!("[{index}]"));
        }
    }
    out
}

/// Which part of a line an error points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// A `[table]` or `[[array]]` header.
    Header,
    /// The key of `key = value`.
    Key,
    /// The value of `key = value`.
    Value,
}

/// The key an error position belongs to.
struct Located {
    path: Vec<Segment>,
    place: Place,
}

/// Works out the key path at byte `offset` by scanning table headers above it.
/// A best effort for ordinary config files; `None` when unsure.
fn locate(text: &str, offset: usize, unknown: bool) -> Option<Located> {
    let mut table: Vec<Segment> = Vec::new();
    let mut counts: Vec<(String, usize)> = Vec::new();
    let mut in_multiline: Option<&str> = None;
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        let line_end = line_start + line.len();
        let is_error_line = offset < line_end || line_end == text.len();
        let trimmed = line.trim_start_matches('\u{feff}').trim();
        if in_multiline.is_none() && trimmed.starts_with('[') {
            let (names, array) = parse_header(trimmed)?;
            // `[[a.b]]` / `[a.b]` under `[[a]]` belong to a's latest entry.
            let mut path: Vec<Segment> = Vec::new();
            for (k, name) in names.iter().enumerate() {
                let prefix = names[..=k].join(".");
                let index = match counts.iter().find(|(full, _)| *full == prefix) {
                    Some((_, count)) if k + 1 < names.len() => Some(count - 1),
                    _ => None,
                };
                path.push(Segment {
                    name: name.clone(),
                    index,
                });
            }
            if array {
                let full = names.join(".");
                let index = match counts.iter_mut().find(|(name, _)| *name == full) {
                    Some((_, count)) => {
                        *count += 1;
                        *count - 1
                    }
                    None => {
                        counts.push((full, 1));
                        0
                    }
                };
                path.last_mut()?.index = Some(index);
            }
            if is_error_line {
                return Some(Located {
                    path,
                    place: Place::Header,
                });
            }
            table = path;
        } else if is_error_line {
            if in_multiline.is_some() {
                return None;
            }
            let column = offset - line_start;
            let eq = find_unquoted(line, '=')?;
            let mut path = table;
            path.extend(
                parse_key(&line[..eq])?
                    .into_iter()
                    .map(|name| Segment { name, index: None }),
            );
            if unknown && column > eq {
                // An unknown key inside an inline table on this line.
                let rest = &line[column..];
                let end = rest.find(|c: char| c == '=' || c.is_whitespace())?;
                path.push(Segment {
                    name: rest[..end].to_string(),
                    index: None,
                });
            }
            return Some(Located {
                path,
                place: if column > eq {
                    Place::Value
                } else {
                    Place::Key
                },
            });
        }
        for quotes in ["\"\"\"", "'''"] {
            if line.matches(quotes).count() % 2 == 1 {
                in_multiline = match in_multiline {
                    None => Some(quotes),
                    Some(open) if open == quotes => None,
                    other => other,
                };
            }
        }
        line_start = line_end;
    }
    None
}

/// Parses `[a.b]` or `[[a.b]]` into its key names and whether it is an array entry.
fn parse_header(line: &str) -> Option<(Vec<String>, bool)> {
    let (inner, array) = match line.strip_prefix("[[") {
        Some(rest) => (&rest[..rest.find("]]")?], true),
        None => (&line[1..line.find(']')?], false),
    };
    Some((parse_key(inner)?, array))
}

/// Parses a dotted key such as `general.port` or `"odd key"`; `None` if it
/// does not look like a key.
fn parse_key(key: &str) -> Option<Vec<String>> {
    key.split('.')
        .map(|part| {
            let part = part.trim();
            let unquoted = part
                .strip_prefix('"')
                .and_then(|p| p.strip_suffix('"'))
                .or_else(|| part.strip_prefix('\'').and_then(|p| p.strip_suffix('\'')));
            match unquoted {
                Some(name) => Some(name.to_string()),
                None if !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
                {
                    Some(part.to_string())
                }
                None => None,
            }
        })
        .collect()
}

/// Byte position of the first `needle` outside a quoted string.
fn find_unquoted(line: &str, needle: char) -> Option<usize> {
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(open), _) if c == open => quote = None,
            (None, '#') => return None,
            (None, _) if c == needle => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::{Config, ConfigError, Users};

    fn config_error(text: &str) -> String {
        match Config::from_str(text, "pgdog.toml") {
            Err(err @ ConfigError::Parse(_)) => err.to_string(),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn unknown_key_in_general() {
        assert_eq!(
            config_error("[general]\nhost = \"x\"\n\nprot = 5\n"),
            "pgdog.toml line 4, column 1: general.prot: unknown key; valid keys in [general] are \
             host, port, workers, default_pool_size, min_pool_size, pooler_mode, \
             load_balancing_strategy, read_write_split, connect_timeout, checkout_timeout, \
             idle_timeout, server_lifetime, client_idle_timeout, query_timeout, shutdown_timeout, \
             healthcheck_interval, idle_healthcheck_interval, idle_healthcheck_delay, \
             healthcheck_timeout, ban_timeout, auth_type, prepared_statements_limit, \
             tls_certificate, tls_private_key, openmetrics_port, openmetrics_namespace, \
             two_phase_commit, resharding_parallel_copies, \
             resharding_copy_retry_max_attempts, resharding_copy_range_bytes, cutover_timeout, \
             cutover_timeout_action, cutover_traffic_stop_threshold, \
             cutover_replication_lag_threshold, cutover_save_config; \
             remove it or fix its spelling"
        );
    }

    #[test]
    fn unknown_variant() {
        assert_eq!(
            config_error("[general]\npooler_mode = \"statement\"\n"),
            "pgdog.toml line 2, column 15: general.pooler_mode: unknown variant \"statement\", \
             expected \"transaction\" or \"session\"; use one of those values"
        );
    }

    #[test]
    fn unknown_variant_of_new_enums() {
        assert_eq!(
            config_error("[general]\nload_balancing_strategy = \"round-robin\"\n"),
            "pgdog.toml line 2, column 27: general.load_balancing_strategy: unknown variant \
             \"round-robin\", expected one of \"random\", \"round_robin\", \
             \"least_active_connections\"; use one of those values"
        );
        assert_eq!(
            config_error("[general]\nread_write_split = \"replicas_only\"\n"),
            "pgdog.toml line 2, column 20: general.read_write_split: unknown variant \
             \"replicas_only\", expected one of \"include_primary\", \"exclude_primary\", \
             \"include_primary_if_replica_banned\"; use one of those values"
        );
    }

    #[test]
    fn negative_port_for_metrics() {
        assert_eq!(
            config_error("[general]\nopenmetrics_port = -1\n"),
            "pgdog.toml line 2, column 20: general.openmetrics_port: invalid value: integer -1, \
             expected a whole number from 0 to 65535; fix the value"
        );
    }

    #[test]
    fn bad_type_in_second_database() {
        assert_eq!(
            config_error(
                "[[databases]]\nname = \"a\"\n\n[[databases]]\nname = \"b\"\nport = \"5432\"\n"
            ),
            "pgdog.toml line 6, column 8: databases[1].port: invalid type: string \"5432\", \
             expected a whole number from 0 to 65535; fix the value"
        );
    }

    #[test]
    fn out_of_range_number() {
        assert_eq!(
            config_error("[general]\nport = 70000\n"),
            "pgdog.toml line 2, column 8: general.port: invalid value: integer 70000, \
             expected a whole number from 0 to 65535; fix the value"
        );
    }

    #[test]
    fn unknown_top_level_section() {
        assert_eq!(
            config_error("[generall]\nhost = \"x\"\n"),
            "pgdog.toml line 1, column 2: generall: unknown key; valid keys at the top level are \
             general, databases, admin, sharded_tables, sharded_mappings, omnisharded_tables, \
             replication; remove it or fix its spelling"
        );
    }

    #[test]
    fn unknown_key_in_sharded_table() {
        assert_eq!(
            config_error(
                "[[sharded_tables]]\ndatabase = \"a\"\ncolumn = \"id\"\n\n\
                 [[sharded_tables]]\ndatabase = \"a\"\ncolum = \"id\"\n"
            ),
            "pgdog.toml line 7, column 1: sharded_tables[1].colum: unknown key; valid keys in \
             [[sharded_tables]] are database, name, schema, column, data_type, hasher, primary, \
             centroids, centroids_path, centroid_probes, mapping; remove it or fix its spelling"
        );
    }

    #[test]
    fn unknown_key_in_mapping_rule() {
        assert_eq!(
            config_error(
                "[[sharded_tables]]\ndatabase = \"a\"\ncolumn = \"id\"\n\
                 [[sharded_tables.mapping]]\nvalues = [1]\nshard = 0\n\
                 [[sharded_tables.mapping]]\nbegin = 5\nshard = 1\n"
            ),
            "pgdog.toml line 8, column 1: sharded_tables[0].mapping[1].begin: unknown key; \
             valid keys in [[sharded_tables.mapping]] are shard, values, start, end; \
             remove it or fix its spelling"
        );
    }

    #[test]
    fn unknown_keys_in_other_sharding_sections() {
        assert_eq!(
            config_error("[[omnisharded_tables]]\ndatabase = \"a\"\ntable = [\"t\"]\n"),
            "pgdog.toml line 3, column 1: omnisharded_tables[0].table: unknown key; valid keys in \
             [[omnisharded_tables]] are database, tables, sticky; remove it or fix its spelling"
        );
        assert_eq!(
            config_error("[[sharded_mappings]]\ndatabase = \"a\"\nshard = 0\nvalue = 1\n"),
            "pgdog.toml line 4, column 1: sharded_mappings[0].value: unknown key; valid keys in \
             [[sharded_mappings]] are database, column, table, schema, kind, values, start, end, \
             shard; remove it or fix its spelling"
        );
    }

    #[test]
    fn mapping_rule_without_shard() {
        assert_eq!(
            config_error(
                "[[sharded_tables]]\ndatabase = \"a\"\ncolumn = \"id\"\n\
                 [[sharded_tables.mapping]]\nvalues = [1]\n"
            ),
            "pgdog.toml line 4, column 1: sharded_tables[0].mapping[0]: missing key \"shard\"; add it"
        );
        assert_eq!(
            config_error(
                "[[sharded_tables]]\ndatabase = \"a\"\ncolumn = \"id\"\n\
                 mapping = [{ values = [1] }]\n"
            ),
            "pgdog.toml line 4, column 12: sharded_tables[0].mapping: missing key \"shard\"; add it"
        );
    }

    #[test]
    fn sharding_value_types() {
        assert_eq!(
            config_error(
                "[[sharded_tables]]\ndatabase = \"a\"\ncolumn = \"id\"\n\
                 [[sharded_tables.mapping]]\nvalues = [1.5]\nshard = 0\n"
            ),
            "pgdog.toml line 5, column 11: sharded_tables[0].mapping[0].values: invalid type: \
             floating point 1.5, expected an integer or a string; fix the value"
        );
        assert_eq!(
            config_error(
                "[[sharded_tables]]\ndatabase = \"a\"\ncolumn = \"id\"\ndata_type = \"int\"\n"
            ),
            "pgdog.toml line 4, column 13: sharded_tables[0].data_type: unknown variant \"int\", \
             expected one of \"bigint\", \"uuid\", \"text\", \"varchar\", \"vector\"; \
             use one of those values"
        );
    }

    #[test]
    fn single_brackets_for_array() {
        assert_eq!(
            config_error("[databases]\nname = \"a\"\n"),
            "pgdog.toml line 1, column 1: databases: invalid type: table, expected an array; \
             write the header with double brackets, [[name]], once per entry"
        );
    }

    #[test]
    fn dotted_key_at_top_level() {
        assert_eq!(
            config_error("general.workers = true\n"),
            "pgdog.toml line 1, column 19: general.workers: invalid type: boolean true, \
             expected a whole number (0 or more); fix the value"
        );
    }

    #[test]
    fn syntax_error() {
        assert_eq!(
            config_error("[general\nport = 1\n"),
            "pgdog.toml line 1, column 9: invalid table header; expected \".\" or \"]\"; fix the TOML syntax"
        );
    }

    #[test]
    fn unquoted_string_value() {
        assert_eq!(
            config_error("[[databases]]\nname = \"a\"\nhost = 127.0.0.1\n"),
            "pgdog.toml line 3, column 13: databases[0].host: expected newline or \"#\"; \
             fix the TOML syntax (text values need double quotes)"
        );
    }

    #[test]
    fn duplicate_table() {
        assert_eq!(
            config_error("[general]\n[general]\n"),
            "pgdog.toml line 2, column 1: general: invalid table header; duplicate key \"general\" \
             in document root; remove one of them"
        );
    }

    #[test]
    fn nested_table_under_array_entry() {
        assert_eq!(
            config_error("[[databases]]\nname = \"a\"\n[[databases]]\nname = \"b\"\n[databases.tls]\n"),
            "pgdog.toml line 5, column 12: databases[1].tls: unknown key; valid keys in [[databases]] \
             are name, host, port, database_name, role, shard, user, password, pool_size, resharding_only; \
             remove it or fix its spelling"
        );
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        assert_eq!(
            config_error("\u{feff}[general]\nport = \"x\"\n"),
            "pgdog.toml line 2, column 8: general.port: invalid type: string \"x\", \
             expected a whole number from 0 to 65535; fix the value"
        );
    }

    #[test]
    fn duplicate_key() {
        assert_eq!(
            config_error("[general]\nport = 1\nport = 2\n"),
            "pgdog.toml line 3, column 1: general.port: duplicate key \"port\" in table \"general\"; \
             remove one of them"
        );
    }

    #[test]
    fn enum_given_a_number() {
        assert_eq!(
            config_error("[[databases]]\nname = \"a\"\nrole = 1\n"),
            "pgdog.toml line 3, column 8: databases[0].role: invalid type, expected a string; fix the value"
        );
    }

    #[test]
    fn multiline_string_does_not_confuse_headers() {
        let text =
            "[[databases]]\nname = \"a\"\npassword = \"\"\"\n[general]\n\"\"\"\nshard = -1\n";
        assert_eq!(
            config_error(text),
            "pgdog.toml line 6, column 9: databases[0].shard: invalid value: integer -1, \
             expected a whole number (0 or more); fix the value"
        );
    }

    #[test]
    fn users_file_unknown_key_in_second_user() {
        let text = "[[users]]\nname = \"a\"\ndatabase = \"a\"\n\n[[users]]\nname = \"b\"\npasword = \"x\"\n";
        let err = Users::from_str(text, "users.toml").unwrap_err().to_string();
        assert!(
            err.starts_with(
                "users.toml line 7, column 1: users[1].pasword: unknown key; valid keys in [[users]] are name, database, password,"
            ),
            "{err}"
        );
    }
}
