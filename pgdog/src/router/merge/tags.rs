//! CommandComplete tags of one statement run on several shards, combined into the tag the
//! client gets: row counts are summed, other tags must agree.

/// Commands whose tag ends with a row count.
const COUNTED: &[&str] = &[
    "DELETE", "UPDATE", "SELECT", "MERGE", "FETCH", "MOVE", "COPY",
];

/// A tag split into its command and row count (`None` for tags without a count).
fn split(tag: &str) -> (&str, Option<u64>) {
    let mut words = tag.split(' ');
    let command = words.next().unwrap_or("");
    let rest: Vec<&str> = words.collect();
    let count = match (command, rest.as_slice()) {
        ("INSERT", [oid, rows]) if oid.parse::<u64>().is_ok() => rows.parse().ok(),
        (command, [rows]) if COUNTED.contains(&command) => rows.parse().ok(),
        _ => None,
    };
    match count {
        Some(count) => (command, Some(count)),
        None => (tag, None),
    }
}

/// Combines the CommandComplete tags of the same statement on several shards: counts are
/// summed (`INSERT 0 n` with oid 0, `UPDATE`/`DELETE`/`SELECT`/`COPY`/`MERGE`/`FETCH`/`MOVE
/// n`); tags without a count must be the same text. `None` when there is no tag or the tags
/// are of different commands.
pub fn combine_tags<'a>(tags: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut tags = tags.into_iter();
    let (command, mut total) = split(tags.next()?);
    for tag in tags {
        let (other, count) = split(tag);
        if other != command || count.is_some() != total.is_some() {
            return None;
        }
        total = total.zip(count).map(|(a, b)| a.saturating_add(b));
    }
    Some(match total {
        None => command.to_string(),
        Some(n) if command == "INSERT" => format!("INSERT 0 {n}"),
        Some(n) => format!("{command} {n}"),
    })
}

/// `SELECT n` with the rows the client got, when the combined tag is a `SELECT` count.
pub fn with_row_count(tag: String, rows: u64) -> String {
    match split(&tag) {
        ("SELECT", Some(_)) => format!("SELECT {rows}"),
        _ => tag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_summed() {
        assert_eq!(
            combine_tags(["SELECT 3", "SELECT 4"]).as_deref(),
            Some("SELECT 7")
        );
        assert_eq!(
            combine_tags(["INSERT 0 2", "INSERT 0 1"]).as_deref(),
            Some("INSERT 0 3")
        );
        assert_eq!(
            combine_tags(["INSERT 12345 1", "INSERT 0 1"]).as_deref(),
            Some("INSERT 0 2")
        );
        for command in COUNTED {
            let tags = [format!("{command} 5"), format!("{command} 0")];
            assert_eq!(
                combine_tags(tags.iter().map(String::as_str)),
                Some(format!("{command} 5"))
            );
        }
        assert_eq!(combine_tags(["UPDATE 1"]).as_deref(), Some("UPDATE 1"));
        assert_eq!(
            combine_tags(["DELETE 18446744073709551615", "DELETE 1"]).as_deref(),
            Some("DELETE 18446744073709551615")
        );
    }

    #[test]
    fn other_tags_must_agree() {
        assert_eq!(
            combine_tags(["CREATE TABLE", "CREATE TABLE"]).as_deref(),
            Some("CREATE TABLE")
        );
        assert_eq!(combine_tags(["SET", "SET", "SET"]).as_deref(), Some("SET"));
        assert_eq!(combine_tags(["CREATE TABLE", "DROP TABLE"]), None);
        assert_eq!(combine_tags(["SELECT 1", "UPDATE 1"]), None);
        assert_eq!(combine_tags(["SELECT 1", "SELECT"]), None);
        assert_eq!(combine_tags(Vec::<&str>::new()), None);
        // A command that is not counted keeps its words.
        assert_eq!(
            combine_tags(["DISCARD ALL", "DISCARD ALL"]).as_deref(),
            Some("DISCARD ALL")
        );
    }

    #[test]
    fn select_count_is_rows_sent() {
        assert_eq!(with_row_count("SELECT 10".into(), 3), "SELECT 3");
        assert_eq!(with_row_count("INSERT 0 10".into(), 3), "INSERT 0 10");
        assert_eq!(with_row_count("SHOW".into(), 3), "SHOW");
    }
}
