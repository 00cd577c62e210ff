//! The sharding sections of `pgdog.toml`, in PgDog's format:
//!
//! * `[[sharded_tables]]`: which column decides the shard of a table's rows,
//!   with optional `[[sharded_tables.mapping]]` list / range / default rules
//!   (without rules, rows are spread by hashing the column);
//! * `[[sharded_mappings]]`: PgDog's older, top-level form of those rules;
//! * `[[omnisharded_tables]]`: tables holding the same rows on every shard.

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// One `[[sharded_tables]]` entry: a sharding key of one database.
///
/// With `name` set it matches that table only; without it, every table that
/// has `column`. Without `mapping` rules, a value's shard is its hash modulo
/// the number of shards.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShardedTable {
    /// `name` of the `[[databases]]` entries this table lives in.
    pub database: String,
    /// Table name, without its schema; `None` means every table with `column`.
    pub name: Option<String>,
    /// Schema of the table; `None` means any schema.
    pub schema: Option<String>,
    /// The sharding column.
    pub column: String,
    /// Type of the column, which says how values in queries are read.
    pub data_type: DataType,
    /// Hash function for hash sharding.
    pub hasher: Hasher,
    /// Marks the table other tables' sharding keys refer to (e.g. `users`),
    /// as in PgDog.
    pub primary: bool,
    /// PgDog's vector sharding centroids. Not supported: setting it is a
    /// validation problem.
    pub centroids: Option<Vec<Vec<f64>>>,
    /// PgDog's file of vector sharding centroids. Not supported: setting it is
    /// a validation problem.
    pub centroids_path: Option<PathBuf>,
    /// PgDog's number of centroids to probe. Not supported: setting it is a
    /// validation problem.
    pub centroid_probes: Option<usize>,
    /// List / range / default rules (`[[sharded_tables.mapping]]`), in file
    /// order. Empty means hash sharding. See also [`crate::Config::mapping_rules`],
    /// which adds the matching `[[sharded_mappings]]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mapping: Vec<MappingRule>,
}

impl ShardedTable {
    /// Whether this entry's rules include the `[[sharded_mappings]]` entry `rule`:
    /// same database and column, same table name (or both without one), and
    /// the same schema if `rule` sets one.
    pub fn matches(&self, rule: &ShardedMapping) -> bool {
        self.database == rule.database
            && self.column == rule.column
            && self.name == rule.table
            && (rule.schema.is_none() || self.schema == rule.schema)
    }
}

/// Data type of a sharding column (`data_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    /// `BIGINT`, also for `INTEGER`, `SMALLINT`, `SERIAL` and `BIGSERIAL` columns.
    #[default]
    Bigint,
    /// `UUID`.
    Uuid,
    /// `VARCHAR`, also for `TEXT` columns; `"text"` is accepted as an alias.
    #[serde(alias = "text")]
    Varchar,
    /// PgDog's vector sharding. Not supported: using it is a validation problem.
    Vector,
}

impl DataType {
    /// The value as written in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bigint => "bigint",
            Self::Uuid => "uuid",
            Self::Varchar => "varchar",
            Self::Vector => "vector",
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Hash function of hash sharding (`hasher`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hasher {
    /// The hash Postgres uses for `PARTITION BY HASH`, as in PgDog.
    #[default]
    Postgres,
    /// PgDog's SHA-1 based hash. Not supported: using it is a validation problem.
    Sha1,
}

impl Hasher {
    /// The value as written in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Sha1 => "sha1",
        }
    }
}

/// One `[[sharded_tables.mapping]]` rule: which values go to `shard`.
///
/// Its kind follows from the keys set (see [`MappingRule::kind`]). A value is
/// looked up in the list rules first, then the range rules, then it goes to
/// the default rule's shard; with no default rule, a value no rule matches
/// goes to all shards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingRule {
    /// Shard the matched values go to (required).
    pub shard: usize,
    /// The values of a list rule (`PARTITION BY LIST`).
    pub values: Option<Vec<ShardingValue>>,
    /// First value of a range rule (included); `None` means no lower bound.
    pub start: Option<ShardingValue>,
    /// End of a range rule (excluded); `None` means no upper bound.
    pub end: Option<ShardingValue>,
}

impl MappingRule {
    /// [`MappingKind::List`] when `values` is set, else [`MappingKind::Range`]
    /// when `start` or `end` is, else [`MappingKind::Default`].
    pub fn kind(&self) -> MappingKind {
        if self.values.is_some() {
            MappingKind::List
        } else if self.start.is_some() || self.end.is_some() {
            MappingKind::Range
        } else {
            MappingKind::Default
        }
    }

    /// The values of a list rule; empty for other kinds.
    pub fn values(&self) -> &[ShardingValue] {
        self.values.as_deref().unwrap_or_default()
    }
}

/// Kind of a mapping rule; also the `kind` key of `[[sharded_mappings]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MappingKind {
    /// Listed values (`values`).
    List,
    /// A range of values (`start` included, `end` excluded).
    Range,
    /// Every value no other rule matches.
    Default,
}

impl MappingKind {
    /// The value as written in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::List => "list",
            Self::Range => "range",
            Self::Default => "default",
        }
    }
}

/// One `[[sharded_mappings]]` entry: PgDog's older form of a mapping rule,
/// kept outside the table it belongs to. It applies to the
/// `[[sharded_tables]]` entries with the same `database`, `column` and table
/// (see [`ShardedTable::matches`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardedMapping {
    /// `database` of the `[[sharded_tables]]` entry.
    #[serde(default)]
    pub database: String,
    /// `column` of the `[[sharded_tables]]` entry.
    #[serde(default)]
    pub column: String,
    /// `name` of the `[[sharded_tables]]` entry; `None` for an entry without one.
    pub table: Option<String>,
    /// `schema` of the `[[sharded_tables]]` entry; `None` matches any.
    pub schema: Option<String>,
    /// Kind of the rule; when `None` it follows from the keys set, as in
    /// `[[sharded_tables.mapping]]`.
    pub kind: Option<MappingKind>,
    /// The values of a list rule.
    pub values: Option<Vec<ShardingValue>>,
    /// First value of a range rule (included).
    pub start: Option<ShardingValue>,
    /// End of a range rule (excluded).
    pub end: Option<ShardingValue>,
    /// Shard the matched values go to (required).
    pub shard: usize,
}

impl ShardedMapping {
    /// This entry as a `[[sharded_tables.mapping]]` rule.
    pub fn rule(&self) -> MappingRule {
        MappingRule {
            shard: self.shard,
            values: self.values.clone(),
            start: self.start.clone(),
            end: self.end.clone(),
        }
    }
}

/// One `[[omnisharded_tables]]` entry: tables of a database that hold the
/// same rows on every shard.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OmnishardedTables {
    /// `name` of the `[[databases]]` entries these tables live in.
    pub database: String,
    /// Table names.
    pub tables: Vec<String>,
    /// Send a client's reads of these tables to the same shard for as long as
    /// it is connected, instead of spreading them over the shards.
    pub sticky: bool,
}

/// A value in a mapping rule: an integer or a string, as written in TOML.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ShardingValue {
    /// An integer, for `bigint` columns.
    Integer(i64),
    /// A string, for `varchar` and `uuid` columns.
    Text(String),
}

impl ShardingValue {
    /// The integer, if this is one.
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Self::Integer(value) => Some(*value),
            Self::Text(_) => None,
        }
    }

    /// The string, if this is one.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Integer(_) => None,
            Self::Text(text) => Some(text),
        }
    }

    /// The string read as a UUID, in any form Postgres accepts (see [`parse_uuid`]).
    pub fn as_uuid(&self) -> Option<u128> {
        self.as_text().and_then(parse_uuid)
    }
}

/// Displays the value as written in TOML: `5` or `"five"`.
impl fmt::Display for ShardingValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Integer(value) => write!(f, "{value}"),
            Self::Text(text) => write!(f, "{text:?}"),
        }
    }
}

impl From<i64> for ShardingValue {
    fn from(value: i64) -> Self {
        Self::Integer(value)
    }
}

impl From<&str> for ShardingValue {
    fn from(value: &str) -> Self {
        Self::Text(value.to_string())
    }
}

impl Serialize for ShardingValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Integer(value) => serializer.serialize_i64(*value),
            Self::Text(text) => serializer.serialize_str(text),
        }
    }
}

impl<'de> Deserialize<'de> for ShardingValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;

        impl Visitor<'_> for ValueVisitor {
            type Value = ShardingValue;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string")
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
                Ok(ShardingValue::Integer(value))
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
                i64::try_from(value)
                    .map(ShardingValue::Integer)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(value), &self))
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(ShardingValue::Text(value.to_string()))
            }

            fn visit_string<E: de::Error>(self, value: String) -> Result<Self::Value, E> {
                Ok(ShardingValue::Text(value))
            }
        }

        deserializer.deserialize_any(ValueVisitor)
    }
}

/// Reads a UUID the way Postgres does: 32 hex digits in either case, optionally
/// in braces, with a hyphen allowed after any group of four digits
/// (`a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11`, `{A0EEBC999C0B4EF8BB6D6BB9BD380A11}`).
pub fn parse_uuid(text: &str) -> Option<u128> {
    let inner = match text.strip_prefix('{') {
        Some(rest) => rest.strip_suffix('}')?,
        None => text,
    };
    let mut value: u128 = 0;
    let mut digits = 0;
    let mut after_hyphen = false;
    for c in inner.chars() {
        if c == '-' {
            if digits == 0 || digits % 4 != 0 || after_hyphen {
                return None;
            }
            after_hyphen = true;
            continue;
        }
        let digit = c.to_digit(16)?;
        if digits == 32 {
            return None;
        }
        value = value << 4 | u128::from(digit);
        digits += 1;
        after_hyphen = false;
    }
    (digits == 32 && !after_hyphen).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn parse(text: &str) -> Config {
        Config::from_str(text, "pgdog.toml").unwrap_or_else(|err| panic!("{err}"))
    }

    #[test]
    fn pgdog_documented_forms_parse() {
        let config = parse(
            "[[sharded_tables]]\ndatabase = \"prod\"\nname = \"users\"\ncolumn = \"id\"\n\
             data_type = \"bigint\"\n\
             [[sharded_tables]]\ndatabase = \"prod\"\ncolumn = \"tenant_id\"\n\
             [[sharded_tables.mapping]]\nvalues = [1, 2, 3]\nshard = 0\n\
             [[sharded_tables.mapping]]\nstart = 5\nend = 10\nshard = 1\n\
             [[sharded_tables.mapping]]\nshard = 2\n\
             [[sharded_tables]]\ndatabase = \"prod\"\ncolumn = \"country\"\ndata_type = \"text\"\n\
             mapping = [ { values = [\"ca\", \"us\"], shard = 0 }, { shard = 1 } ]\n\
             [[omnisharded_tables]]\ndatabase = \"prod\"\nsticky = true\ntables = [\"settings\"]\n\
             [[sharded_mappings]]\ndatabase = \"prod\"\ncolumn = \"tenant_id\"\nkind = \"list\"\n\
             values = [4]\nshard = 1\n",
        );
        let [users, tenants, country] = &config.sharded_tables[..] else {
            panic!("{:?}", config.sharded_tables);
        };
        assert_eq!(users.name.as_deref(), Some("users"));
        assert_eq!(users.data_type, DataType::Bigint);
        assert!(users.mapping.is_empty());
        assert_eq!(tenants.data_type, DataType::Bigint);
        let kinds: Vec<_> = tenants.mapping.iter().map(MappingRule::kind).collect();
        assert_eq!(
            kinds,
            [MappingKind::List, MappingKind::Range, MappingKind::Default]
        );
        assert_eq!(tenants.mapping[0].values(), [1.into(), 2.into(), 3.into()]);
        assert_eq!(tenants.mapping[1].start, Some(5.into()));
        assert_eq!(tenants.mapping[1].end, Some(10.into()));
        assert_eq!(tenants.mapping[2].shard, 2);
        assert_eq!(country.data_type, DataType::Varchar);
        assert_eq!(country.mapping[0].values(), ["ca".into(), "us".into()]);
        assert_eq!(country.mapping[1].kind(), MappingKind::Default);
        assert_eq!(
            config.omnisharded_tables[0],
            OmnishardedTables {
                database: "prod".into(),
                tables: vec!["settings".into()],
                sticky: true,
            }
        );
        let old = &config.sharded_mappings[0];
        assert_eq!(old.kind, Some(MappingKind::List));
        assert!(tenants.matches(old) && !users.matches(old));
        assert_eq!(old.rule().kind(), MappingKind::List);
    }

    #[test]
    fn value_display_is_toml() {
        assert_eq!(ShardingValue::from(-3).to_string(), "-3");
        assert_eq!(ShardingValue::from("a\"b").to_string(), "\"a\\\"b\"");
    }

    #[test]
    fn uuids_in_postgres_forms() {
        let canonical = parse_uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap();
        assert_eq!(canonical, 0xa0eebc999c0b4ef8bb6d6bb9bd380a11);
        for same in [
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
            "{a0eebc999c0b4ef8bb6d6bb9bd380a11}",
        ] {
            assert_eq!(parse_uuid(same), Some(canonical), "{same}");
        }
        for bad in [
            "",
            "a0eebc99",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-",
            "-a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eeb-c99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        ] {
            assert_eq!(parse_uuid(bad), None, "{bad}");
        }
    }
}
