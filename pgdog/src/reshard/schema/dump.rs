//! Reading pg_dump's plain-SQL schema output: one [`DumpEntry`] per archive item, named by
//! the `-- Name: ...; Type: ...; Schema: ...` header pg_dump writes before each, with its
//! statements split by the PostgreSQL parser (session `SET`s and psql meta-commands dropped).

/// One object of a dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpEntry {
    /// pg_dump's object type: `TABLE`, `SEQUENCE OWNED BY`, `FK CONSTRAINT`, ...
    pub kind: String,
    /// Its schema (`None` for `-`: schemas, extensions).
    pub schema: Option<String>,
    /// pg_dump's tag: `t`, `t c` for constraints and defaults, `f(integer)` for functions.
    pub name: String,
    /// Its statements, each without the trailing semicolon.
    pub statements: Vec<String>,
}

impl DumpEntry {
    /// `KIND schema.name`, for messages.
    pub fn label(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{} {}.{}", self.kind, schema, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }

    /// The key that identifies the object in any dump.
    pub fn key(&self) -> (String, Option<String>, String) {
        (self.kind.clone(), self.schema.clone(), self.name.clone())
    }
}

/// Why a dump could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse pg_dump output for {entry}: {reason}")]
pub struct DumpError {
    /// The entry.
    pub entry: String,
    /// The parser's message.
    pub reason: String,
}

/// Splits a plain-format schema dump into entries, in dump order (which respects dependencies).
pub fn parse(dump: &str) -> Result<Vec<DumpEntry>, DumpError> {
    let mut entries = Vec::new();
    let mut current: Option<(DumpEntry, String)> = None;
    for line in dump.lines() {
        if let Some(header) = parse_header(line) {
            if let Some((entry, body)) = current.take() {
                entries.push(finish(entry, &body)?);
            }
            current = Some((header, String::new()));
            continue;
        }
        if line.starts_with('\\') {
            continue;
        }
        if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    if let Some((entry, body)) = current.take() {
        entries.push(finish(entry, &body)?);
    }
    Ok(entries)
}

/// `-- Name: x; Type: TABLE; Schema: s; Owner: -`.
fn parse_header(line: &str) -> Option<DumpEntry> {
    let rest = line.strip_prefix("-- Name: ")?;
    let type_at = rest.find("; Type: ")?;
    let name = &rest[..type_at];
    let rest = &rest[type_at + "; Type: ".len()..];
    let schema_at = rest.find("; Schema: ")?;
    let kind = &rest[..schema_at];
    let rest = &rest[schema_at + "; Schema: ".len()..];
    let schema = match rest.rfind("; Owner: ") {
        Some(at) => &rest[..at],
        None => rest,
    };
    Some(DumpEntry {
        kind: kind.to_string(),
        schema: (schema != "-").then(|| schema.to_string()),
        name: name.to_string(),
        statements: Vec::new(),
    })
}

fn finish(mut entry: DumpEntry, body: &str) -> Result<DumpEntry, DumpError> {
    entry.statements = split(body).map_err(|reason| DumpError {
        entry: entry.label(),
        reason,
    })?;
    Ok(entry)
}

/// The statements of `sql` without comments-only pieces and session settings.
pub fn split(sql: &str) -> Result<Vec<String>, String> {
    let pieces = std::panic::catch_unwind(|| {
        pg_query::split_with_parser(sql).map(|p| p.into_iter().map(str::to_string).collect())
    })
    .map_err(|_| "the SQL parser failed".to_string())?
    .map_err(|e: pg_query::Error| e.to_string())?;
    let pieces: Vec<String> = pieces;
    Ok(pieces
        .into_iter()
        .map(|p| strip_comments(&p).trim().to_string())
        .filter(|p| !p.is_empty() && !is_session_setting(p))
        .collect())
}

/// Removes whole-line `--` comments (pg_dump puts them only on their own lines).
fn strip_comments(sql: &str) -> String {
    sql.lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_session_setting(statement: &str) -> bool {
    let upper = statement.to_ascii_uppercase();
    upper.starts_with("SET ") || upper.starts_with("SELECT PG_CATALOG.SET_CONFIG(")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = r#"--
-- PostgreSQL database dump
--

\restrict abc

SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);

--
-- Name: Sales; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA "Sales";


--
-- Name: touch(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.touch() RETURNS trigger
    LANGUAGE plpgsql
    AS $$ BEGIN NEW.x = 1; RETURN NEW; END $$;


SET default_table_access_method = heap;

--
-- Name: Customers; Type: TABLE; Schema: Sales; Owner: -
--

CREATE TABLE "Sales"."Customers" (
    id integer NOT NULL
);

--
-- Name: Customers Customers_pkey; Type: CONSTRAINT; Schema: Sales; Owner: -
--

ALTER TABLE ONLY "Sales"."Customers"
    ADD CONSTRAINT "Customers_pkey" PRIMARY KEY (id);

--
-- PostgreSQL database dump complete
--

\unrestrict abc
"#;

    #[test]
    fn splits_entries_by_header() {
        let entries = parse(DUMP).unwrap();
        let kinds: Vec<_> = entries.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["SCHEMA", "FUNCTION", "TABLE", "CONSTRAINT"]);
        assert_eq!(entries[0].schema, None);
        assert_eq!(entries[0].statements, [r#"CREATE SCHEMA "Sales""#]);
        assert_eq!(entries[1].name, "touch()");
        assert_eq!(entries[1].statements.len(), 1);
        assert!(entries[1].statements[0].ends_with("END $$"));
        assert_eq!(entries[2].schema.as_deref(), Some("Sales"));
        assert_eq!(entries[3].name, "Customers Customers_pkey");
        assert_eq!(entries[3].statements.len(), 1);
        assert!(entries[3].statements[0].contains("PRIMARY KEY (id)"));
    }

    #[test]
    fn bad_sql_names_the_entry() {
        let dump = "--\n-- Name: t; Type: TABLE; Schema: public; Owner: -\n--\n\nCREATE TABLE (;\n";
        let error = parse(dump).unwrap_err();
        assert_eq!(error.entry, "TABLE public.t");
    }
}
