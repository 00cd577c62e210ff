//! The validation rules. Every broken rule becomes a [`Problem`] naming the
//! file, the key and the fix; all of them are collected, not just the first.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::Problem;
use crate::hash::{classify, HashKind};
use crate::{
    AuthType, ConfigAndUsers, DataType, Hasher, MappingKind, MappingRule, Role, ShardedMapping,
    ShardedTable, ShardingValue,
};

/// Runs every rule over both files.
pub(crate) fn problems(all: &ConfigAndUsers) -> Vec<Problem> {
    let mut check = Checker {
        all,
        problems: Vec::new(),
    };
    check.general();
    check.replication();
    check.databases();
    check.sharding();
    check.users();
    check.admin();
    check.problems
}

/// Formats a string the way it would be written in TOML.
fn quoted(value: &str) -> String {
    format!("{value:?}")
}

/// Collects problems while walking the config.
struct Checker<'a> {
    all: &'a ConfigAndUsers,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn config_file(&self) -> &Path {
        &self.all.config_path
    }

    fn report(&mut self, file: PathBuf, key: String, value: Option<String>, message: String) {
        self.problems.push(Problem {
            file,
            key,
            value,
            message,
        });
    }

    /// A problem in `pgdog.toml`.
    fn config(
        &mut self,
        key: impl Into<String>,
        value: Option<String>,
        message: impl Into<String>,
    ) {
        let file = self.all.config_path.clone();
        self.report(file, key.into(), value, message.into());
    }

    /// A problem in `users.toml`.
    fn users_file(
        &mut self,
        key: impl Into<String>,
        value: Option<String>,
        message: impl Into<String>,
    ) {
        let file = self.all.users_path.clone();
        self.report(file, key.into(), value, message.into());
    }

    /// `[replication]` and the `resharding_*` settings of `[general]`.
    fn replication(&mut self) {
        let general = &self.all.config.general;
        for (key, value) in [
            (
                "general.resharding_parallel_copies",
                general.resharding_parallel_copies,
            ),
            (
                "general.resharding_copy_retry_max_attempts",
                general.resharding_copy_retry_max_attempts,
            ),
        ] {
            if value == 0 {
                self.config(key, Some("0".into()), "must be at least 1, e.g. 2");
            }
        }
        if self.all.config.general.cutover_timeout == 0 {
            self.config(
                "general.cutover_timeout",
                Some("0".into()),
                "must be at least 1 (milliseconds), e.g. 30000",
            );
        }
        let range = self.all.config.general.resharding_copy_range_bytes;
        if range < 8192 {
            self.config(
                "general.resharding_copy_range_bytes",
                Some(range.to_string()),
                "must be at least 8192 (one page); e.g. 67108864 for 64 MiB ranges",
            );
        }
        let replication = &self.all.config.replication;
        if replication.sequence_margin < 0 {
            let value = replication.sequence_margin.to_string();
            self.config(
                "replication.sequence_margin",
                Some(value),
                "must not be negative; set how far above the source's value sequences restart at cutover, e.g. 1000",
            );
        }
        if replication.index_jobs == 0 {
            self.config(
                "replication.index_jobs",
                Some("0".into()),
                "must be at least 1; set how many indexes each shard builds at once, e.g. 4",
            );
        }
    }

    /// `[general]`: port, workers, pool sizes, health checks, bans, metrics and TLS files.
    fn general(&mut self) {
        let general = &self.all.config.general;
        if general.port == 0 {
            self.config(
                "general.port",
                Some("0".into()),
                "pgdog cannot listen on port 0; set a port from 1 to 65535, e.g. 6432",
            );
        }
        if general.workers == 0 {
            self.config(
                "general.workers",
                Some("0".into()),
                "must be at least 1; set it to the number of worker threads, e.g. 2",
            );
        }
        if general.prepared_statements_limit == 0 {
            self.config(
                "general.prepared_statements_limit",
                Some("0".into()),
                "must be at least 1; set how many prepared statements each server connection keeps, e.g. 500",
            );
        }
        if general.default_pool_size == 0 {
            self.config(
                "general.default_pool_size",
                Some("0".into()),
                "must be at least 1; set it to the number of server connections per pool, e.g. 10",
            );
        } else if general.min_pool_size > general.default_pool_size {
            self.config(
                "general.min_pool_size",
                Some(general.min_pool_size.to_string()),
                format!(
                    "is larger than general.default_pool_size ({}); lower it or raise default_pool_size",
                    general.default_pool_size
                ),
            );
        }
        self.health_and_bans();
        self.metrics();
        let tls = [
            (
                "tls_certificate",
                &general.tls_certificate,
                "tls_private_key",
                &general.tls_private_key,
            ),
            (
                "tls_private_key",
                &general.tls_private_key,
                "tls_certificate",
                &general.tls_certificate,
            ),
        ];
        for (key, path, other_key, other) in tls {
            let Some(path) = path else { continue };
            let value = Some(quoted(&path.display().to_string()));
            if other.is_none() {
                self.config(
                    format!("general.{key}"),
                    value.clone(),
                    format!(
                        "is set but general.{other_key} is not; set both to enable TLS, or remove {key}"
                    ),
                );
            }
            if let Err(reason) = readable_file(path) {
                self.config(
                    format!("general.{key}"),
                    value,
                    format!(
                        "cannot read {}: {reason}; fix the path (relative paths start from the \
                         directory pgdog runs in) or remove the setting",
                        path.display()
                    ),
                );
            }
        }
    }

    /// `[general]` health check and ban durations: none of these may be 0.
    fn health_and_bans(&mut self) {
        let general = &self.all.config.general;
        let rules = [
            (
                "healthcheck_interval",
                general.healthcheck_interval,
                "set how often, in milliseconds, a server connection is checked before \
                 a client gets it, e.g. 30000",
            ),
            (
                "idle_healthcheck_interval",
                general.idle_healthcheck_interval,
                "set how often, in milliseconds, every pool is checked even without \
                 traffic, e.g. 30000",
            ),
            (
                "healthcheck_timeout",
                general.healthcheck_timeout,
                "set how long, in milliseconds, a health check may take before the server \
                 counts as down, e.g. 5000",
            ),
            (
                "ban_timeout",
                general.ban_timeout,
                "set how long, in milliseconds, a failed server stays out of rotation, e.g. 300000",
            ),
        ];
        for (key, value, fix) in rules {
            if value == 0 {
                self.config(
                    format!("general.{key}"),
                    Some("0".into()),
                    format!("must be at least 1; {fix}"),
                );
            }
        }
    }

    /// `[general]` OpenMetrics endpoint: a usable port of its own and a namespace
    /// that keeps metric names valid.
    fn metrics(&mut self) {
        let general = &self.all.config.general;
        match general.openmetrics_port {
            Some(0) => self.config(
                "general.openmetrics_port",
                Some("0".into()),
                "pgdog cannot serve metrics on port 0; set a port from 1 to 65535, e.g. 9090, \
                 or remove openmetrics_port to disable metrics",
            ),
            Some(port) if port == general.port => self.config(
                "general.openmetrics_port",
                Some(port.to_string()),
                format!(
                    "is the same as general.port ({port}), where pgdog listens for clients; \
                     set another port, e.g. 9090, or remove openmetrics_port to disable metrics"
                ),
            ),
            _ => {}
        }
        let namespace = &general.openmetrics_namespace;
        let bad_char = namespace
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | ':')));
        let message = if let Some(c) = bad_char {
            Some(format!(
                "contains {}, which is not allowed in metric names; use only letters, digits, \
                 \"_\" and \":\", e.g. \"pgdog_\", or remove it for no prefix",
                quoted(&c.to_string())
            ))
        } else if namespace.starts_with(|c: char| c.is_ascii_digit()) {
            Some(
                "starts with a digit, but metric names must not; start it with a letter or \"_\", \
                 e.g. \"pgdog_\", or remove it for no prefix"
                    .to_string(),
            )
        } else {
            None
        };
        if let Some(message) = message {
            self.config(
                "general.openmetrics_namespace",
                Some(quoted(namespace)),
                message,
            );
        }
    }

    /// `[[databases]]`: names, hosts, ports, pool sizes, one primary per shard, contiguous shards.
    fn databases(&mut self) {
        let config = &self.all.config;
        let min_pool_size = config.general.min_pool_size;
        let mut primaries: HashMap<(&str, usize), usize> = HashMap::new();
        let mut shards: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
        for (i, db) in config.databases.iter().enumerate() {
            let key = |field: &str| format!("databases[{i}].{field}");
            if db.name.is_empty() {
                self.config(
                    key("name"),
                    Some(quoted("")),
                    "is empty; set it to the name clients connect to",
                );
            } else {
                shards.entry(&db.name).or_default().insert(db.shard);
            }
            if db.host.is_empty() {
                self.config(
                    key("host"),
                    Some(quoted("")),
                    "is empty; set it to the Postgres server's host name or IP, e.g. \"127.0.0.1\"",
                );
            }
            if db.port == 0 {
                self.config(
                    key("port"),
                    Some("0".into()),
                    "is not a valid Postgres port; set it to the server's port, e.g. 5432",
                );
            }
            if db.resharding_only && db.role == crate::Role::Primary {
                self.config(
                    key("resharding_only"),
                    Some("true".into()),
                    "applies to replicas only (a primary must serve its shard); set role = \"replica\" or remove it",
                );
            }
            if db.database_name.as_deref() == Some("") {
                self.config(
                    key("database_name"),
                    Some(quoted("")),
                    "is empty; set it to the database name on the Postgres server, or remove it to use name",
                );
            }
            match db.pool_size {
                Some(0) => self.config(
                    key("pool_size"),
                    Some("0".into()),
                    "must be at least 1; raise it, or remove it to use general.default_pool_size",
                ),
                Some(size) if size < min_pool_size => self.config(
                    key("pool_size"),
                    Some(size.to_string()),
                    format!(
                        "is smaller than general.min_pool_size ({min_pool_size}); raise it or lower min_pool_size"
                    ),
                ),
                _ => {}
            }
            if db.role == Role::Primary {
                if let Some(first) = primaries.insert((&db.name, db.shard), i) {
                    primaries.insert((&db.name, db.shard), first);
                    self.config(
                        key("role"),
                        Some(quoted("primary")),
                        format!(
                            "second primary for database {} shard {} (the first is databases[{first}]); \
                             set role = \"replica\" on one of them or fix its shard",
                            quoted(&db.name),
                            db.shard
                        ),
                    );
                }
            }
        }
        for (name, numbers) in shards {
            let Some(&last) = numbers.last() else {
                continue;
            };
            let Some(index) = config
                .databases
                .iter()
                .position(|db| db.name == name && db.shard == last)
            else {
                continue;
            };
            for missing in (0..last).filter(|shard| !numbers.contains(shard)) {
                self.config(
                    format!("databases[{index}].shard"),
                    Some(last.to_string()),
                    format!(
                        "database {} has no shard {missing}; shards must be numbered 0 to N-1 without gaps; \
                         add a [[databases]] entry with name = {} and shard = {missing}, or renumber the shards",
                        quoted(name),
                        quoted(name)
                    ),
                );
            }
        }
    }

    /// `[[sharded_tables]]` with their mapping rules, `[[sharded_mappings]]`
    /// and `[[omnisharded_tables]]`.
    fn sharding(&mut self) {
        let config = &self.all.config;
        let first = self.problems.len();
        for (i, table) in config.sharded_tables.iter().enumerate() {
            self.sharded_table(i, table);
        }
        for (i, rule) in config.sharded_mappings.iter().enumerate() {
            self.sharded_mapping(i, rule);
        }
        for (i, table) in config.sharded_tables.iter().enumerate() {
            self.rule_conflicts(i, table);
        }
        self.omnisharded_tables();
        // A [[sharded_mappings]] entry matching several tables is checked once
        // per table; report each problem once.
        for problem in self.problems.split_off(first) {
            if !self.problems[first..].contains(&problem) {
                self.problems.push(problem);
            }
        }
    }

    /// The `database` key of a sharding entry, which must name `[[databases]]`
    /// entries; returns their number of shards if it does.
    fn sharding_database(&mut self, key: String, database: &str, of: &str) -> Option<usize> {
        if database.is_empty() {
            self.config(
                key,
                None,
                format!(
                    "is missing or empty; set it to the name of the [[databases]] entries {of}"
                ),
            );
            return None;
        }
        match self.all.config.shard_count(database) {
            0 => {
                self.config(
                    key,
                    Some(quoted(database)),
                    format!(
                        "no [[databases]] entry named {}; add one or fix the name",
                        quoted(database)
                    ),
                );
                None
            }
            count => Some(count),
        }
    }

    /// The optional table name (under `name_key`) and schema of the sharding
    /// entry at `at`: not empty, and no schema inside the table name.
    fn table_and_schema(
        &mut self,
        at: &str,
        name_key: &str,
        name: Option<&str>,
        schema: Option<&str>,
        column: &str,
    ) {
        let key = |field: &str| format!("{at}.{field}");
        match name {
            Some("") => self.config(
                key(name_key),
                Some(quoted("")),
                format!(
                    "is empty; set it to the table's name, or remove {name_key} to match every \
                     table that has the column {}",
                    quoted(column)
                ),
            ),
            Some(name) if name.contains('.') => self.config(
                key(name_key),
                Some(quoted(name)),
                format!(
                    "contains \".\"; set {name_key} to the table's name only and schema to its \
                     schema, e.g. {name_key} = \"users\" and schema = \"public\""
                ),
            ),
            _ => {}
        }
        if schema == Some("") {
            self.config(
                key("schema"),
                Some(quoted("")),
                "is empty; set it to the table's schema, or remove schema to match any schema",
            );
        }
    }

    /// One `[[sharded_tables]]` entry and its own mapping rules.
    fn sharded_table(&mut self, i: usize, table: &ShardedTable) {
        let key = |field: &str| format!("sharded_tables[{i}].{field}");
        let shards =
            self.sharding_database(key("database"), &table.database, "this table lives in");
        if table.column.is_empty() {
            self.config(
                key("column"),
                None,
                "is missing or empty; set it to the name of the sharding column, e.g. \"user_id\"",
            );
        }
        self.table_and_schema(
            &format!("sharded_tables[{i}]"),
            "name",
            table.name.as_deref(),
            table.schema.as_deref(),
            &table.column,
        );
        if table.data_type == DataType::Vector {
            self.config(
                key("data_type"),
                Some(quoted("vector")),
                "vector sharding is not supported by pgdog yet; use \"bigint\", \"uuid\" or \"varchar\"",
            );
        }
        let vector_keys = [
            ("centroids", table.centroids.is_some()),
            ("centroids_path", table.centroids_path.is_some()),
            ("centroid_probes", table.centroid_probes.is_some()),
        ];
        for (field, set) in vector_keys {
            if set {
                self.config(
                    key(field),
                    None,
                    "is for vector sharding, which pgdog does not support yet; remove it",
                );
            }
        }
        if table.hasher == Hasher::Sha1 {
            self.config(
                key("hasher"),
                Some(quoted(Hasher::Sha1.as_str())),
                "is not supported by pgdog yet; remove hasher to use \"postgres\", the default",
            );
        }
        let same = |other: &ShardedTable| {
            other.database == table.database
                && other.schema == table.schema
                && other.name == table.name
                && other.column == table.column
        };
        let duplicate = self.all.config.sharded_tables[..i].iter().position(same);
        if let (Some(first), false) = (duplicate, table.column.is_empty()) {
            self.config(
                key("column"),
                Some(quoted(&table.column)),
                format!(
                    "duplicates sharded_tables[{first}] (same database, schema, table and column); \
                     remove one of them, moving its mapping rules to the other"
                ),
            );
        }
        for (k, rule) in table.mapping.iter().enumerate() {
            let at = format!("sharded_tables[{i}].mapping[{k}]");
            self.mapping_rule(&at, rule, Some(table.data_type), shards, &table.database);
        }
    }

    /// One `[[sharded_mappings]]` entry: its own keys, the table it belongs
    /// to and its rule.
    fn sharded_mapping(&mut self, i: usize, mapping: &ShardedMapping) {
        let key = |field: &str| format!("sharded_mappings[{i}].{field}");
        let shards = self.sharding_database(
            key("database"),
            &mapping.database,
            "the sharded table lives in",
        );
        if mapping.column.is_empty() {
            self.config(
                key("column"),
                None,
                "is missing or empty; set it to the column of the [[sharded_tables]] entry this rule is for",
            );
        }
        self.table_and_schema(
            &format!("sharded_mappings[{i}]"),
            "table",
            mapping.table.as_deref(),
            mapping.schema.as_deref(),
            &mapping.column,
        );
        let rule = mapping.rule();
        if let Some(kind) = mapping.kind {
            if kind != rule.kind() {
                let needs = match kind {
                    MappingKind::List => "a list rule needs values",
                    MappingKind::Range => "a range rule needs start and/or end, and no values",
                    MappingKind::Default => "a default rule takes no values, start or end",
                };
                self.config(
                    key("kind"),
                    Some(quoted(kind.as_str())),
                    format!("does not fit the other keys: {needs}; fix kind or those keys"),
                );
            }
        }
        let table = self
            .all
            .config
            .sharded_tables
            .iter()
            .find(|table| table.matches(mapping));
        if table.is_none() && shards.is_some() && !mapping.column.is_empty() {
            let name = match &mapping.table {
                Some(name) => format!("name = {}", quoted(name)),
                None => "no name".to_string(),
            };
            self.config(
                key("column"),
                Some(quoted(&mapping.column)),
                format!(
                    "no [[sharded_tables]] entry has database = {}, column = {} and {name}{}; \
                     add one (it sets the column's data_type) or fix this rule's database, table \
                     and column",
                    quoted(&mapping.database),
                    quoted(&mapping.column),
                    match &mapping.schema {
                        Some(schema) => format!(" and schema = {}", quoted(schema)),
                        None => String::new(),
                    }
                ),
            );
        }
        let data_type = table.map(|table| table.data_type);
        let at = format!("sharded_mappings[{i}]");
        self.mapping_rule(&at, &rule, data_type, shards, &mapping.database);
    }

    /// One mapping rule at `at` on its own: its shard exists, it is one kind
    /// of rule, and its values fit the column's type (when known).
    fn mapping_rule(
        &mut self,
        at: &str,
        rule: &MappingRule,
        data_type: Option<DataType>,
        shards: Option<usize>,
        database: &str,
    ) {
        match shards {
            Some(count) if rule.shard >= count => {
                let has = if count == 1 {
                    "has only shard 0; use it".to_string()
                } else {
                    format!("has shards 0 to {}; use one of those", count - 1)
                };
                self.config(
                    format!("{at}.shard"),
                    Some(rule.shard.to_string()),
                    format!(
                        "database {} {has}, or add [[databases]] entries with name = {} for \
                         the missing shards",
                        quoted(database),
                        quoted(database)
                    ),
                );
            }
            _ => {}
        }
        let ranged = rule.start.is_some() || rule.end.is_some();
        match &rule.values {
            Some(_) if ranged => self.config(
                format!("{at}.values"),
                None,
                "a rule is either a list (values) or a range (start and/or end), not both; \
                 split it into two rules",
            ),
            Some(values) if values.is_empty() => self.config(
                format!("{at}.values"),
                Some("[]".into()),
                "is empty; list the values that go to this shard, or remove values to make \
                 this the default rule",
            ),
            _ => {}
        }
        let Some(data_type) = data_type.filter(|&t| t != DataType::Vector) else {
            return;
        };
        for value in rule.values() {
            self.value_type(format!("{at}.values"), value, data_type);
        }
        if !ranged {
            return;
        }
        if data_type != DataType::Bigint {
            let field = if rule.start.is_some() { "start" } else { "end" };
            let value = rule.start.as_ref().or(rule.end.as_ref());
            self.config(
                format!("{at}.{field}"),
                value.map(ToString::to_string),
                format!(
                    "range rules work on bigint columns only, and data_type is {}; list the \
                     values instead (values = [...])",
                    quoted(data_type.as_str())
                ),
            );
            return;
        }
        let start = rule.start.as_ref();
        let end = rule.end.as_ref();
        let mut fits = |field: &str, bound: Option<&ShardingValue>| match bound {
            Some(value) => self.value_type(format!("{at}.{field}"), value, data_type),
            None => true,
        };
        let start_ok = fits("start", start);
        let end_ok = fits("end", end);
        if let (Some(start), Some(end), true, true) = (start, end, start_ok, end_ok) {
            if start.as_integer() >= end.as_integer() {
                self.config(
                    format!("{at}.end"),
                    Some(end.to_string()),
                    format!(
                        "is not greater than start ({start}); a range covers start up to but not \
                         including end, so end must be greater"
                    ),
                );
            }
        }
    }

    /// Whether `value` fits a column of `data_type`; reports it if not.
    fn value_type(&mut self, key: String, value: &ShardingValue, data_type: DataType) -> bool {
        const UUID: &str = "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"";
        let message = match (data_type, value) {
            (DataType::Bigint, ShardingValue::Text(_)) => {
                "is a string, but data_type is \"bigint\"; write the number without quotes"
                    .to_string()
            }
            (DataType::Varchar, ShardingValue::Integer(n)) => format!(
                "is a number, but data_type is \"varchar\"; write it in double quotes, e.g. \"{n}\""
            ),
            (DataType::Uuid, ShardingValue::Integer(_)) => format!(
                "is a number, but data_type is \"uuid\"; write the UUID in double quotes, e.g. {UUID}"
            ),
            (DataType::Uuid, ShardingValue::Text(_)) if value.as_uuid().is_none() => format!(
                "is not a UUID, but data_type is \"uuid\"; write 32 hex digits in the usual \
                 groups, e.g. {UUID}"
            ),
            _ => return true,
        };
        self.config(key, Some(value.to_string()), message);
        false
    }

    /// All mapping rules of one table together, its own and the matching
    /// `[[sharded_mappings]]`: at most one default rule, each value in one
    /// list only, ranges that do not overlap.
    fn rule_conflicts(&mut self, i: usize, table: &ShardedTable) {
        let config = &self.all.config;
        let own = table
            .mapping
            .iter()
            .enumerate()
            .map(|(k, rule)| (format!("sharded_tables[{i}].mapping[{k}]"), rule.clone()));
        let older = config
            .sharded_mappings
            .iter()
            .enumerate()
            .filter(|(_, mapping)| table.matches(mapping))
            .map(|(m, mapping)| (format!("sharded_mappings[{m}]"), mapping.rule()));
        let rules: Vec<(String, MappingRule)> = own.chain(older).collect();

        let mut default: Option<&str> = None;
        let mut listed: HashMap<ValueKey, &str> = HashMap::new();
        let mut ranges: Vec<(&str, Option<i64>, Option<i64>)> = Vec::new();
        for (at, rule) in &rules {
            match rule.kind() {
                MappingKind::Default => match default {
                    None => default = Some(at),
                    Some(first) => self.config(
                        format!("{at}.shard"),
                        Some(rule.shard.to_string()),
                        format!(
                            "is a second default rule (a rule with only shard) for this table; \
                             the first is {first}; keep only one"
                        ),
                    ),
                },
                MappingKind::List => {
                    for value in rule.values() {
                        let Some(value_key) = ValueKey::new(value, table.data_type) else {
                            continue;
                        };
                        match listed.get(&value_key) {
                            None => {
                                listed.insert(value_key, at);
                            }
                            Some(&first) => {
                                let message = if first == at {
                                    "is listed twice in this rule; remove one".to_string()
                                } else {
                                    format!(
                                        "is also listed in {first}; a value goes to one shard \
                                         only: remove it from one of the rules"
                                    )
                                };
                                self.config(
                                    format!("{at}.values"),
                                    Some(value.to_string()),
                                    message,
                                );
                            }
                        }
                    }
                }
                MappingKind::Range => {
                    let bound = |value: &Option<ShardingValue>| match value {
                        None => Some(None),
                        Some(value) => value.as_integer().map(Some),
                    };
                    let (Some(start), Some(end)) = (bound(&rule.start), bound(&rule.end)) else {
                        continue;
                    };
                    if table.data_type != DataType::Bigint
                        || start.zip(end).is_some_and(|(s, e)| s >= e)
                    {
                        continue;
                    }
                    let overlap = ranges.iter().find(|(_, other_start, other_end)| {
                        below(start, *other_end) && below(*other_start, end)
                    });
                    if let Some(&(first, other_start, other_end)) = overlap {
                        let (field, value) = match (&rule.start, &rule.end) {
                            (Some(start), _) => ("start", start),
                            (None, Some(end)) => ("end", end),
                            (None, None) => continue,
                        };
                        self.config(
                            format!("{at}.{field}"),
                            Some(value.to_string()),
                            format!(
                                "this range ({}) overlaps the range of {first} ({}); each value \
                                 goes to one shard only: change start or end so they do not overlap",
                                describe_range(start, end),
                                describe_range(other_start, other_end)
                            ),
                        );
                    } else {
                        ranges.push((at, start, end));
                    }
                }
            }
        }
    }

    /// `[[omnisharded_tables]]`: database, table names, each table listed
    /// once and not also sharded.
    fn omnisharded_tables(&mut self) {
        let config = &self.all.config;
        let mut seen: HashMap<(&str, &str), String> = HashMap::new();
        for (i, entry) in config.omnisharded_tables.iter().enumerate() {
            let key = |field: &str| format!("omnisharded_tables[{i}].{field}");
            self.sharding_database(key("database"), &entry.database, "these tables live in");
            if entry.tables.is_empty() {
                self.config(
                    key("tables"),
                    Some("[]".into()),
                    "is empty; list the tables that hold the same rows on every shard, or remove \
                     this entry",
                );
            }
            for (t, name) in entry.tables.iter().enumerate() {
                let at = key(&format!("tables[{t}]"));
                if name.is_empty() {
                    self.config(
                        at,
                        Some(quoted("")),
                        "is empty; set the table's name or remove it",
                    );
                    continue;
                }
                if let Some(first) = seen.get(&(entry.database.as_str(), name.as_str())) {
                    self.config(
                        at,
                        Some(quoted(name)),
                        format!(
                            "is already listed for database {} at {first}; remove one of them",
                            quoted(&entry.database)
                        ),
                    );
                    continue;
                }
                seen.insert((&entry.database, name), at.clone());
                let (schema, table) = match name.rsplit_once('.') {
                    Some((schema, table)) => (Some(schema), table),
                    None => (None, name.as_str()),
                };
                let sharded = config.sharded_tables.iter().position(|sharded| {
                    sharded.database == entry.database
                        && sharded.name.as_deref() == Some(table)
                        && (schema.is_none()
                            || sharded.schema.is_none()
                            || sharded.schema.as_deref() == schema)
                });
                if let Some(j) = sharded {
                    self.config(
                        at,
                        Some(quoted(name)),
                        format!(
                            "is also a sharded table (sharded_tables[{j}]); a table either has its \
                             rows split over the shards or the same rows on every shard: remove it \
                             here or remove sharded_tables[{j}]"
                        ),
                    );
                }
            }
        }
    }

    /// `[[users]]`: names, databases, duplicates, pool sizes and passwords.
    fn users(&mut self) {
        let all = self.all;
        let config = &all.config;
        let auth = config.general.auth_type;
        let config_file = self.config_file().display().to_string();
        let names: HashSet<&str> = config.databases.iter().map(|db| db.name.as_str()).collect();
        let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
        for (i, user) in all.users.users.iter().enumerate() {
            let key = |field: &str| format!("users[{i}].{field}");
            let who = quoted(&user.name);
            if user.name.is_empty() {
                self.users_file(
                    key("name"),
                    Some(quoted("")),
                    "is empty; set it to the user name clients log in with",
                );
            }
            if user.database.is_empty() {
                self.users_file(
                    key("database"),
                    Some(quoted("")),
                    format!(
                        "is empty; set it to the name of a [[databases]] entry in {config_file}"
                    ),
                );
            } else if !names.contains(user.database.as_str()) {
                self.users_file(
                    key("database"),
                    Some(quoted(&user.database)),
                    format!(
                        "no [[databases]] entry named {} in {config_file}; add one or fix the name",
                        quoted(&user.database)
                    ),
                );
            }
            if let Some(first) = seen.insert((&user.name, &user.database), i) {
                seen.insert((&user.name, &user.database), first);
                self.users_file(
                    key("name"),
                    Some(who.clone()),
                    format!(
                        "duplicates users[{first}] (same name and database {}); remove one of them",
                        quoted(&user.database)
                    ),
                );
            }
            self.user_pool_sizes(i, user);
            self.user_passwords(i, user, auth, &config_file);
        }
    }

    /// A user's `pool_size` and `min_pool_size`, against every server of its database.
    fn user_pool_sizes(&mut self, i: usize, user: &crate::User) {
        let all = self.all;
        let key = |field: &str| format!("users[{i}].{field}");
        if user.pool_size == Some(0) {
            self.users_file(
                key("pool_size"),
                Some("0".into()),
                "must be at least 1; raise it, or remove it to use the database's pool size",
            );
            return;
        }
        let min = all.min_pool_size(user);
        let too_small = all
            .config
            .databases
            .iter()
            .enumerate()
            .filter(|(_, db)| db.name == user.database)
            .map(|(j, db)| (j, db, all.pool_size(user, db)))
            .find(|&(_, _, size)| size > 0 && min > size);
        let Some((j, db, size)) = too_small else {
            return;
        };
        if user.min_pool_size.is_some() {
            let source = if user.pool_size.is_some() {
                key("pool_size")
            } else if db.pool_size.is_some() {
                format!(
                    "databases[{j}].pool_size in {}",
                    self.config_file().display()
                )
            } else {
                format!(
                    "general.default_pool_size in {}",
                    self.config_file().display()
                )
            };
            self.users_file(
                key("min_pool_size"),
                Some(min.to_string()),
                format!("is larger than this user's pool size ({size}, from {source}); lower it or raise the pool size"),
            );
        } else if user.pool_size.is_some() {
            self.users_file(
                key("pool_size"),
                Some(size.to_string()),
                format!(
                    "is smaller than general.min_pool_size ({min}) in {}; raise it or set min_pool_size for this user",
                    self.config_file().display()
                ),
            );
        }
        // Otherwise the database's or the general pool size is at fault; reported there.
    }

    /// A user's `password` / `password_hash` against `auth_type`, and whether
    /// pgdog has a password to log in to Postgres with.
    fn user_passwords(&mut self, i: usize, user: &crate::User, auth: AuthType, config_file: &str) {
        let all = self.all;
        let key = |field: &str| format!("users[{i}].{field}");
        let auth_key = format!(
            "general.auth_type = {} in {config_file}",
            quoted(auth.as_str())
        );
        match &user.password_hash {
            None if user.password.is_none() && auth != AuthType::Trust => {
                let hash = match auth {
                    AuthType::Md5 => "an md5 hash",
                    _ => "a SCRAM-SHA-256 secret",
                };
                self.users_file(
                    key("password"),
                    None,
                    format!(
                        "user {} has neither password nor password_hash, but {auth_key} needs one; \
                         set password, or set password_hash to {hash} from pg_authid.rolpassword",
                        quoted(&user.name)
                    ),
                );
            }
            None => {}
            Some(hash) => {
                match (classify(hash), auth) {
                    (Err(reason), _) => self.users_file(
                        key("password_hash"),
                        None,
                        format!(
                            "{reason}; it must be SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> \
                             or md5 followed by 32 hex digits, as stored in pg_authid.rolpassword; \
                             copy it from there or use password instead"
                        ),
                    ),
                    (Ok(HashKind::Scram), AuthType::Md5) => self.users_file(
                        key("password_hash"),
                        None,
                        format!(
                            "is a SCRAM secret, but {auth_key} needs the plaintext password or an md5 hash; \
                             replace it with password or an md5 hash, or set auth_type = \"scram\""
                        ),
                    ),
                    (Ok(HashKind::Md5), AuthType::Scram) => self.users_file(
                        key("password_hash"),
                        None,
                        format!(
                            "is an md5 hash, but {auth_key} needs the plaintext password or a SCRAM secret; \
                             replace it with password or a SCRAM secret, or set auth_type = \"md5\""
                        ),
                    ),
                    _ => {}
                }
                if user.password.is_none() && user.server_password.is_none() {
                    let without: Vec<String> = all
                        .config
                        .databases
                        .iter()
                        .enumerate()
                        .filter(|(_, db)| db.name == user.database && db.password.is_none())
                        .map(|(j, _)| format!("databases[{j}]"))
                        .collect();
                    if !without.is_empty() {
                        self.users_file(
                            key("server_password"),
                            None,
                            format!(
                                "user {} has only a password_hash, so pgdog has no password to log in to \
                                 Postgres with for {} in {config_file}; set server_password for this user, \
                                 or password in that [[databases]] entry",
                                quoted(&user.name),
                                without.join(", ")
                            ),
                        );
                    }
                }
            }
        }
    }

    /// The effective `[admin]`: non-empty name and user, no clash with a database name.
    fn admin(&mut self) {
        let all = self.all;
        let admin = all.admin();
        let (file, set_here) = if all.users.admin.is_some() {
            (all.users_path.clone(), true)
        } else {
            (all.config_path.clone(), all.config.admin.is_some())
        };
        if admin.name.is_empty() {
            self.report(
                file.clone(),
                "admin.name".into(),
                Some(quoted("")),
                "is empty; set it to the name of the admin database, e.g. \"admin\"".into(),
            );
        } else if all.config.databases.iter().any(|db| db.name == admin.name) {
            let message = if set_here {
                format!(
                    "is also the name of a [[databases]] entry in {}; choose another admin name or rename the database",
                    self.config_file().display()
                )
            } else {
                format!(
                    "is the default admin database name and also the name of a [[databases]] entry; \
                     add [admin] with another name to {}, or rename the database",
                    self.config_file().display()
                )
            };
            self.report(
                file.clone(),
                "admin.name".into(),
                Some(quoted(&admin.name)),
                message,
            );
        }
        if admin.user.is_empty() {
            self.report(
                file,
                "admin.user".into(),
                Some(quoted("")),
                "is empty; set it to the user name for the admin database, e.g. \"admin\"".into(),
            );
        }
    }
}

/// A list value as the column compares it: UUIDs in any form compare equal.
#[derive(Debug, PartialEq, Eq, Hash)]
enum ValueKey<'a> {
    Integer(i64),
    Text(&'a str),
    Uuid(u128),
}

impl<'a> ValueKey<'a> {
    /// `None` when the value does not fit the column (reported elsewhere).
    fn new(value: &'a ShardingValue, data_type: DataType) -> Option<Self> {
        match data_type {
            DataType::Bigint => value.as_integer().map(Self::Integer),
            DataType::Varchar => value.as_text().map(Self::Text),
            DataType::Uuid => value.as_uuid().map(Self::Uuid),
            DataType::Vector => None,
        }
    }
}

/// Whether range bound `start` is below `end`, where `None` is minus infinity
/// for `start` and plus infinity for `end`.
fn below(start: Option<i64>, end: Option<i64>) -> bool {
    match (start, end) {
        (Some(start), Some(end)) => start < end,
        _ => true,
    }
}

/// A range in words: "5 up to 10", "5 and up", "below 10".
fn describe_range(start: Option<i64>, end: Option<i64>) -> String {
    match (start, end) {
        (Some(start), Some(end)) => format!("{start} up to {end}"),
        (Some(start), None) => format!("{start} and up"),
        (None, Some(end)) => format!("below {end}"),
        (None, None) => "every value".to_string(),
    }
}

/// Checks that `path` is a regular file that can be opened for reading.
fn readable_file(path: &Path) -> Result<(), String> {
    let file = File::open(path).map_err(|err| err.to_string())?;
    let meta = file.metadata().map_err(|err| err.to_string())?;
    if meta.is_file() {
        Ok(())
    } else {
        Err("it is not a regular file".into())
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
