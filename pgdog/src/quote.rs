//! Quoting names and values into SQL text that pgdog writes itself (sharded rewrites,
//! resharding statements).

/// `name` as a quoted SQL identifier: `"name"`, inner quotes doubled.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `schema.name` with both parts quoted.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// `text` as a standard SQL string literal: `'text'`, inner quotes doubled.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_names_and_values() {
        assert_eq!(ident(r#"My "T""#), r#""My ""T""""#);
        assert_eq!(qualified("Sales", "t"), r#""Sales"."t""#);
        assert_eq!(literal("it's"), "'it''s'");
    }
}
