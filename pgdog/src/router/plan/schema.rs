//! The sharding rules of one database as the planner reads them: which tables are sharded by
//! which column (and how a key value maps to a shard), which are omnisharded, and which are
//! PostgreSQL's own catalogs. Built from `pgdog-config` once per (re)load.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use pgdog_config::{Config, DataType, MappingKind, MappingRule, ShardingValue};

use crate::net::{sqlstate, ErrorResponse};
use crate::router::route::Shards;
use crate::router::sharding::{parse_bigint, parse_uuid, shard_of, KeyValue, ParseKeyError};

/// The sharding rules of one database, built from the config (rebuilt on reload).
#[derive(Debug, Clone)]
pub struct ShardingSchema {
    shards: usize,
    /// `[[sharded_tables]]` entries with a `name`: (schema, name, rule).
    named: Vec<(Option<String>, String, TableRule)>,
    /// `[[sharded_tables]]` entries without a `name` (every table having the column):
    /// (schema, rule).
    any_table: Vec<(Option<String>, TableRule)>,
    /// `[[omnisharded_tables]]` names (as written: `name` or `schema.name`).
    omnisharded: HashSet<String>,
    /// The database's first `[[sharded_tables]]` entry (the `pgdog.sharding_key` rule).
    first: Option<TableRule>,
    /// Identifies the rules: analyses made with other rules are not reused.
    id: u64,
}

/// How the rows of one sharded table are placed: its key column, the column's type and the
/// mapping from a key value to a shard (list/range/default rules, else the hash).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableRule {
    column: String,
    data_type: DataType,
    /// The entry has no table name: it applies to every table that has the column.
    any_table: bool,
    mapping: Arc<Mapping>,
    shards: usize,
}

/// The mapping rules of a table, decoded for its key type. Empty: hash sharding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
struct Mapping {
    lists: Vec<(OwnedKey, usize)>,
    ranges: Vec<(Option<OwnedKey>, Option<OwnedKey>, usize)>,
    default: Option<usize>,
}

/// A key value owned by the schema (mapping rule bounds and list values).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum OwnedKey {
    Int(i64),
    Text(String),
    Uuid([u8; 16]),
}

/// What the schema says about one table named in a query.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum TableClass {
    /// A `[[sharded_tables]]` entry names it.
    Sharded(TableRule),
    /// An `[[omnisharded_tables]]` table: the same rows on every shard.
    Omnisharded,
    /// `pg_catalog`, `information_schema` or a `pg_*` relation: any shard answers.
    Catalog,
    /// Any other table: sharded by one of these rules if it has the rule's column (entries
    /// without a table name), else a table without a sharding key (all shards).
    Other(Vec<TableRule>),
}

impl ShardingSchema {
    /// The rules of the database clients reach by `database` in `config`.
    pub fn new(config: &Config, database: &str) -> ShardingSchema {
        let shards = config.shard_count(database).max(1);
        let mut named = Vec::new();
        let mut any_table = Vec::new();
        let mut first = None;
        for table in config.sharded_tables_of(database) {
            let rule = TableRule {
                column: table.column.clone(),
                data_type: table.data_type,
                any_table: table.name.is_none(),
                mapping: Arc::new(Mapping::new(table.data_type, &config.mapping_rules(table))),
                shards,
            };
            if first.is_none() {
                first = Some(rule.clone());
            }
            match &table.name {
                Some(name) => named.push((table.schema.clone(), name.clone(), rule)),
                None => any_table.push((table.schema.clone(), rule)),
            }
        }
        let omnisharded: HashSet<String> = config
            .omnisharded_tables_of(database)
            .map(|(name, _sticky)| name.to_string())
            .collect();

        let mut hasher = DefaultHasher::new();
        shards.hash(&mut hasher);
        named.hash(&mut hasher);
        any_table.hash(&mut hasher);
        let mut omni: Vec<&String> = omnisharded.iter().collect();
        omni.sort();
        omni.hash(&mut hasher);
        ShardingSchema {
            shards,
            named,
            any_table,
            omnisharded,
            first,
            id: hasher.finish(),
        }
    }

    /// Number of shards (at least one).
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// A number that changes when the rules change (analyses made with other rules are stale).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The shard(s) a value of the database's sharding key belongs to (`SET
    /// pgdog.sharding_key = 'v'`, `/* pgdog_sharding_key: v */`): read with the type and
    /// mapping rules of the database's first `[[sharded_tables]]` entry.
    ///
    /// Errors: 42704 when the database has no sharded table, 22P02/22003 when the text is not
    /// a value of the key's type, 23514 when no mapping rule takes the value.
    pub fn shards_for_text(&self, value: &str) -> Result<Shards, ErrorResponse> {
        let Some(rule) = &self.first else {
            return Err(ErrorResponse::error(
                sqlstate::UNDEFINED_OBJECT,
                "this database has no sharded tables: a sharding key cannot be used",
            ));
        };
        rule.shards_of_text(value)
    }

    /// The rule placing the rows of `table` (COPY, data copy, replication): the
    /// `[[sharded_tables]]` entry naming it, else an entry without a table name whose column
    /// is one of `columns` (the table's columns). `None` for omnisharded tables, catalogs and
    /// tables without a sharding key.
    pub fn table_rule(
        &self,
        schema: Option<&str>,
        table: &str,
        columns: &[&str],
    ) -> Option<TableRule> {
        match self.classify(schema, table) {
            TableClass::Sharded(rule) => Some(rule),
            TableClass::Other(rules) => rules
                .into_iter()
                .find(|rule| columns.contains(&rule.column.as_str())),
            TableClass::Omnisharded | TableClass::Catalog => None,
        }
    }

    /// Whether the database has sharded tables configured by name or by column.
    pub fn has_sharded_tables(&self) -> bool {
        !self.named.is_empty() || !self.any_table.is_empty()
    }

    /// What the schema says about the table `schema.name` (`schema` as written in the
    /// query; an unqualified name matches entries of any schema).
    pub(super) fn classify(&self, schema: Option<&str>, name: &str) -> TableClass {
        let schema_matches = |entry: &Option<String>| match (entry.as_deref(), schema) {
            (Some(entry), Some(query)) => entry == query,
            _ => true,
        };
        if let Some((_, _, rule)) = self.named.iter().find(|(entry_schema, entry_name, _)| {
            entry_name == name && schema_matches(entry_schema)
        }) {
            return TableClass::Sharded(rule.clone());
        }
        let qualified = schema.map(|schema| format!("{schema}.{name}"));
        if self.omnisharded.contains(name)
            || qualified.is_some_and(|qualified| self.omnisharded.contains(&qualified))
        {
            return TableClass::Omnisharded;
        }
        let catalog = match schema {
            Some(schema) => schema == "pg_catalog" || schema == "information_schema",
            None => name.starts_with("pg_"),
        };
        if catalog {
            return TableClass::Catalog;
        }
        TableClass::Other(
            self.any_table
                .iter()
                .filter(|(entry_schema, _)| schema_matches(entry_schema))
                .map(|(_, rule)| rule.clone())
                .collect(),
        )
    }
}

impl TableRule {
    /// The sharding key column.
    pub fn column(&self) -> &str {
        &self.column
    }

    /// The key column's type: how values are read.
    pub fn data_type(&self) -> DataType {
        self.data_type
    }

    /// Whether the rule comes from an entry without a table name (it applies to every table
    /// that has the column).
    pub fn any_table(&self) -> bool {
        self.any_table
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// The shard of a key value: the first list rule listing it, else the first range rule
    /// holding it, else the default rule; the hash when the table has no mapping rules.
    /// `None` when the table has rules and none takes the value.
    pub fn shard(&self, key: &KeyValue) -> Option<usize> {
        if self.mapping.is_empty() {
            return Some(shard_of(key, self.shards));
        }
        self.mapping.lookup(key)
    }

    /// The shards a key value selects when reading: its shard, or every shard when no
    /// mapping rule takes it (it may be anywhere).
    pub fn read_shards(&self, key: &KeyValue) -> Shards {
        match self.shard(key) {
            Some(shard) => Shards::One(shard),
            None => Shards::All,
        }
    }

    /// Where a row with this key is stored (INSERT, COPY, an UPDATE's new key): the key's
    /// shard; for a NULL key (`None`), the default rule's shard, or shard 0 under hash
    /// sharding (the partition PostgreSQL picks for NULL).
    ///
    /// Errors (23514) when no mapping rule takes the value.
    pub fn shards_of(&self, key: Option<&KeyValue>) -> Result<Shards, ErrorResponse> {
        let shard = match key {
            Some(key) => self.shard(key),
            None if self.mapping.is_empty() => Some(0),
            None => self.mapping.default,
        };
        match shard {
            Some(shard) => Ok(Shards::One(shard)),
            None => Err(self.no_shard(key)),
        }
    }

    /// [`TableRule::shards_of`] of a key's text form (read as the column's type). Errors
    /// 22P02/22003 when it is not a value of that type.
    pub fn shards_of_text(&self, text: &str) -> Result<Shards, ErrorResponse> {
        let key = self.parse(text)?;
        self.shards_of(Some(&key))
    }

    /// Reads a key's text form as the column's type: 22P02 (22003 out of range, 0A000 for
    /// unsupported types) when it is not one.
    pub fn parse<'a>(&self, text: &'a str) -> Result<KeyValue<'a>, ErrorResponse> {
        KeyValue::parse(self.data_type, text).map_err(|err| parse_error(&err))
    }

    /// Reads a key in PostgreSQL's binary format (COPY BINARY, binary Bind parameters):
    /// integers by their length (2, 4 or 8 bytes), text as UTF-8, uuid as 16 bytes. 22P03
    /// when the bytes do not fit the column's type.
    pub fn decode_binary<'a>(&self, bytes: &'a [u8]) -> Result<KeyValue<'a>, ErrorResponse> {
        decode_binary(self.data_type, bytes).ok_or_else(|| {
            ErrorResponse::error(
                sqlstate::INVALID_BINARY_REPRESENTATION,
                format!(
                    "a binary value of {} bytes is not a valid sharding key of type {}",
                    bytes.len(),
                    self.data_type
                ),
            )
        })
    }

    fn no_shard(&self, key: Option<&KeyValue>) -> ErrorResponse {
        let value = key.map_or_else(|| "NULL".to_string(), |key| key.to_string());
        ErrorResponse::error(
            sqlstate::CHECK_VIOLATION,
            format!(
                "no shard for sharding key value {value} of column \"{}\"",
                self.column
            ),
        )
        .hint("add a mapping rule for the value, or a default rule (a rule with only `shard`)")
    }
}

/// A key in binary format as `data_type` (see [`TableRule::decode_binary`]).
pub(super) fn decode_binary(data_type: DataType, bytes: &[u8]) -> Option<KeyValue<'_>> {
    match data_type {
        DataType::Bigint => match bytes.len() {
            2 => Some(KeyValue::from(i16::from_be_bytes([bytes[0], bytes[1]]))),
            4 => {
                let array: [u8; 4] = bytes.try_into().ok()?;
                Some(KeyValue::from(i32::from_be_bytes(array)))
            }
            8 => {
                let array: [u8; 8] = bytes.try_into().ok()?;
                Some(KeyValue::Int(i64::from_be_bytes(array)))
            }
            _ => None,
        },
        DataType::Varchar => std::str::from_utf8(bytes).ok().map(KeyValue::Text),
        DataType::Uuid => bytes.try_into().ok().map(KeyValue::Uuid),
        DataType::Vector => None,
    }
}

/// The ErrorResponse for a key text that is not a value of its type (PostgreSQL's message).
pub(super) fn parse_error(err: &ParseKeyError) -> ErrorResponse {
    let code = match err {
        ParseKeyError::Syntax { .. } => sqlstate::INVALID_TEXT_REPRESENTATION,
        ParseKeyError::OutOfRange { .. } => sqlstate::NUMERIC_VALUE_OUT_OF_RANGE,
        ParseKeyError::Unsupported { .. } => sqlstate::FEATURE_NOT_SUPPORTED,
    };
    ErrorResponse::error(code, err.to_string())
}

impl Mapping {
    /// Decodes the rules for `data_type`; values that are not of the type (which validation
    /// reports) are skipped.
    fn new(data_type: DataType, rules: &[MappingRule]) -> Mapping {
        let mut mapping = Mapping::default();
        for rule in rules {
            match rule.kind() {
                MappingKind::List => {
                    for value in rule.values() {
                        if let Some(key) = OwnedKey::new(data_type, value) {
                            mapping.lists.push((key, rule.shard));
                        }
                    }
                }
                MappingKind::Range => {
                    let bound = |value: &Option<ShardingValue>| match value {
                        Some(value) => OwnedKey::new(data_type, value).map(Some),
                        None => Some(None),
                    };
                    if let (Some(start), Some(end)) = (bound(&rule.start), bound(&rule.end)) {
                        mapping.ranges.push((start, end, rule.shard));
                    }
                }
                MappingKind::Default => {
                    if mapping.default.is_none() {
                        mapping.default = Some(rule.shard);
                    }
                }
            }
        }
        mapping
    }

    fn is_empty(&self) -> bool {
        self.lists.is_empty() && self.ranges.is_empty() && self.default.is_none()
    }

    fn lookup(&self, key: &KeyValue) -> Option<usize> {
        let key = OwnedKey::from_key(key);
        if let Some((_, shard)) = self.lists.iter().find(|(value, _)| *value == key) {
            return Some(*shard);
        }
        let in_range = |(start, end, _): &&(Option<OwnedKey>, Option<OwnedKey>, usize)| {
            start.as_ref().is_none_or(|start| *start <= key)
                && end.as_ref().is_none_or(|end| key < *end)
        };
        if let Some((_, _, shard)) = self.ranges.iter().find(in_range) {
            return Some(*shard);
        }
        self.default
    }
}

impl OwnedKey {
    /// A config value read as `data_type`.
    fn new(data_type: DataType, value: &ShardingValue) -> Option<OwnedKey> {
        match (data_type, value) {
            (DataType::Bigint, ShardingValue::Integer(value)) => Some(OwnedKey::Int(*value)),
            (DataType::Bigint, ShardingValue::Text(text)) => {
                parse_bigint(text).ok().map(OwnedKey::Int)
            }
            (DataType::Varchar, ShardingValue::Text(text)) => Some(OwnedKey::Text(text.clone())),
            (DataType::Varchar, ShardingValue::Integer(value)) => {
                Some(OwnedKey::Text(value.to_string()))
            }
            (DataType::Uuid, ShardingValue::Text(text)) => {
                parse_uuid(text).ok().map(OwnedKey::Uuid)
            }
            _ => None,
        }
    }

    /// Compared like PostgreSQL compares the type: integers numerically, uuids bytewise,
    /// text bytewise (the `C` collation).
    fn from_key(key: &KeyValue) -> OwnedKey {
        match key {
            KeyValue::Int(value) => OwnedKey::Int(*value),
            KeyValue::Text(text) => OwnedKey::Text((*text).to_string()),
            KeyValue::Uuid(bytes) => OwnedKey::Uuid(*bytes),
        }
    }
}
