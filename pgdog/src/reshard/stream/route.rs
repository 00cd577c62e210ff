//! Turning one decoded change into SQL on the shards that need it. Inserts go to the new
//! row's shard; an update whose row changes shard becomes a delete on the old shard and an
//! insert on the new one; when the message cannot say where the old row was (the sharding key
//! is not part of the replica identity), the new shard updates the row or inserts it, and the
//! other shards delete it. Unchanged TOAST values (`u`) are never written: updates set only
//! the columns that came, and a row that moves gets them filled in first (see
//! [`missing_values`]). Tables without a rule get every change on every shard.

use std::fmt::Write;

use super::net::{Bulk, Net, RowChange, NO_EQUALITY};
use super::pgoutput::{OldTuple, Value};
use super::tables::Target;
use super::StreamError;
use crate::quote;
use crate::router::route::Shards;

/// Values of a statement: inlined as literals, or collected as parameters of a prepared
/// statement (`$1`, `$2`, ... with their types).
#[derive(Debug)]
struct Params {
    prepared: bool,
    types: Vec<String>,
    values: Vec<String>,
}

impl Params {
    fn literal() -> Params {
        Params {
            prepared: false,
            types: Vec::new(),
            values: Vec::new(),
        }
    }

    fn prepared() -> Params {
        Params {
            prepared: true,
            ..Params::literal()
        }
    }

    /// The SQL standing for `value` (a quoted literal) of type `sql_type`.
    fn bind(&mut self, sql_type: &str, value: String) -> String {
        if !self.prepared {
            return value;
        }
        self.types.push(sql_type.to_string());
        self.values.push(value);
        format!("${}", self.values.len())
    }
}

/// The SQL one shard gets in the current batch.
#[derive(Debug, Default)]
pub struct ShardSql {
    /// Statements separated by `;`.
    pub sql: String,
    /// Rows changed (statements written, and rows added to a multi-row INSERT).
    pub rows: u64,
    /// The INSERT that the next row of the same table may extend (`relation`, columns).
    open_insert: Option<(String, usize)>,
    /// Statements prepared on the shard's connection in this session, by text.
    prepared: std::collections::HashMap<String, String>,
    /// PREPAREs the shard must run before `sql`, each as a query of its own: a PREPARE inside
    /// a multi-statement query keeps the whole query text as its source, which PostgreSQL
    /// then copies on every EXECUTE.
    pub prepares: Vec<String>,
    /// Where the open source transaction's statements start: (`sql` length, `rows`).
    open_at: (usize, u64),
    /// The start of its prepared statements' names (empty: `pgdog_apply_`).
    prefix: String,
    /// Row changes held to be written by their net effect (`None`: each is written as it
    /// comes). See [`Net`].
    net: Option<Net>,
    /// The open transaction's changes are held with (or were written together with) the
    /// earlier ones: it can no longer be cut off.
    open_mixed: bool,
}

impl ShardSql {
    /// SQL whose prepared statements' names start with `prefix` (apart from others on the
    /// same connection).
    pub fn named(prefix: &str) -> ShardSql {
        ShardSql {
            prefix: prefix.to_string(),
            ..ShardSql::default()
        }
    }

    /// Writes row changes by their net effect from now on (see [`Net`]): only where the
    /// shard's triggers and foreign keys are off, as the order of the steps changes.
    pub fn hold_changes(&mut self, on: bool) {
        self.write_held();
        self.net = on.then(Net::default);
    }

    /// Adds a statement as it is.
    pub fn push_statement(&mut self, sql: &str) {
        self.statement(sql);
    }

    fn statement(&mut self, sql: &str) {
        self.write_held();
        self.push_sql(sql);
        self.rows += 1;
    }

    fn push_sql(&mut self, sql: &str) {
        if !self.sql.is_empty() {
            self.sql.push_str(";\n");
        }
        self.sql.push_str(sql);
        self.open_insert = None;
    }

    /// Holds `change` when the net takes it (counted as a row changed).
    fn hold(&mut self, target: &Target, change: RowChange<'_>) -> bool {
        let held = self
            .net
            .as_mut()
            .is_some_and(|net| net.absorb(target, change));
        if held {
            self.rows += 1;
            self.open_mixed = true;
        }
        held
    }

    /// Writes the held changes' statements.
    fn write_held(&mut self) {
        let Some(net) = self.net.as_mut().filter(|n| !n.is_empty()) else {
            return;
        };
        for bulk in net.take() {
            let Bulk {
                shape,
                types,
                values,
            } = bulk;
            let params = Params {
                prepared: true,
                types,
                values,
            };
            self.run_prepared(&shape, &params);
        }
        self.open_mixed = true;
    }

    /// Whether nothing waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.sql.is_empty()
            && self.prepares.is_empty()
            && self.net.as_ref().is_none_or(Net::is_empty)
    }

    /// About how large what waits to be sent is (bytes).
    pub fn size(&self) -> usize {
        self.sql.len() + self.net.as_ref().map_or(0, Net::bytes)
    }

    /// Takes what goes to the shard now: the PREPAREs to run first and the statements.
    pub fn take(&mut self) -> (Vec<String>, String) {
        self.write_held();
        self.open_insert = None;
        self.open_at = (usize::MAX, u64::MAX);
        (
            std::mem::take(&mut self.prepares),
            std::mem::take(&mut self.sql),
        )
    }

    /// A source transaction begins: its statements start here (and do not extend an INSERT
    /// of the transactions before, so the batch can be cut between them).
    pub fn begin_transaction(&mut self) {
        self.open_at = (self.sql.len(), self.rows);
        self.open_insert = None;
        self.open_mixed = false;
    }

    /// Whether the open transaction's statements are all here (none sent ahead) and apart
    /// from the earlier ones.
    pub fn can_split(&self) -> bool {
        let (at, rows) = self.open_at;
        !self.open_mixed && at <= self.sql.len() && rows <= self.rows
    }

    /// Cuts off the open transaction's statements and row count (the rest of the batch is
    /// committed without them), or `None` when part of it was sent already.
    pub fn split_open(&mut self) -> Option<(String, u64)> {
        if !self.can_split() {
            return None;
        }
        let (at, rows) = self.open_at;
        let open = self.sql.split_off(at);
        let open_rows = self.rows - rows;
        self.rows = rows;
        self.open_insert = None;
        Some((open.trim_start_matches(";\n").to_string(), open_rows))
    }

    /// Puts back what [`split_open`](Self::split_open) cut off, as the next batch's start.
    pub fn restore_open(&mut self, sql: String, rows: u64) {
        self.sql = sql;
        self.rows = rows;
        self.open_at = (0, 0);
        self.open_insert = None;
    }

    /// Starts the next batch: no SQL, no rows; the prepared statements stay.
    pub fn reset(&mut self) {
        if let Some(net) = self.net.as_mut() {
            net.clear();
        }
        self.open_mixed = false;
        self.open_insert = None;
        self.sql.clear();
        self.rows = 0;
        self.open_at = (0, 0);
    }

    /// Runs `shape` (a statement with `$n` parameters) with `params`: prepared once per
    /// session (planning is the costly part of a one-row UPDATE or DELETE), then EXECUTEd.
    fn execute(&mut self, shape: &str, params: &Params) {
        self.write_held();
        self.run_prepared(shape, params);
        self.rows += 1;
    }

    /// [`execute`](Self::execute) without writing what is held or counting a row.
    fn run_prepared(&mut self, shape: &str, params: &Params) {
        if !params.prepared || params.values.is_empty() {
            self.push_sql(shape);
            return;
        }
        // The types are part of the statement: a column whose type changed on the source
        // gets a statement of its own.
        let prepare = format!("({}) AS {shape}", params.types.join(", "));
        let name = match self.prepared.get(&prepare) {
            Some(name) => name.clone(),
            None => {
                let prefix = match self.prefix.as_str() {
                    "" => "pgdog_apply_",
                    prefix => prefix,
                };
                let name = format!("{prefix}{}", self.prepared.len() + 1);
                self.prepares.push(format!("PREPARE {name} {prepare}"));
                self.prepared.insert(prepare, name.clone());
                name
            }
        };
        self.push_sql(&format!("EXECUTE {name}({})", params.values.join(", ")));
    }

    fn insert(&mut self, target: &Target, new: &[Value]) -> Result<(), StreamError> {
        if self.hold(target, RowChange::Insert(new)) {
            return Ok(());
        }
        self.write_held();
        let values = row_values(target, new)?;
        let open = (target.qualified.clone(), new.len());
        if self.open_insert.as_ref() == Some(&open) {
            self.sql.push_str(",\n");
            self.sql.push_str(&values);
            self.rows += 1;
            return Ok(());
        }
        let sql = format!(
            // Identity columns GENERATED ALWAYS take the source's values too.
            "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE VALUES {values}",
            target.qualified,
            target.columns.join(", ")
        );
        self.statement(&sql);
        self.open_insert = Some(open);
        Ok(())
    }
}

/// Where a change goes: `active[s]` is false for shards that already applied this
/// transaction (after a restart); they get nothing.
pub struct Out<'a> {
    /// Every shard's SQL.
    pub shards: &'a mut [ShardSql],
    /// Shards applying this transaction.
    pub active: &'a [bool],
}

impl Out<'_> {
    fn each(
        &mut self,
        shards: &Shards,
        mut write: impl FnMut(&mut ShardSql) -> Result<(), StreamError>,
    ) -> Result<(), StreamError> {
        for (shard, sql) in self.shards.iter_mut().enumerate() {
            let selected = match shards {
                Shards::One(s) => *s == shard,
                Shards::Many(list) => list.contains(&shard),
                Shards::All | Shards::Any => true,
            };
            if selected && self.active.get(shard).copied().unwrap_or(false) {
                write(sql)?;
            }
        }
        Ok(())
    }

    fn all_but(
        &mut self,
        except: usize,
        mut write: impl FnMut(&mut ShardSql) -> Result<(), StreamError>,
    ) -> Result<(), StreamError> {
        let others: Vec<usize> = (0..self.shards.len()).filter(|s| *s != except).collect();
        if others.is_empty() {
            return Ok(());
        }
        self.each(&Shards::Many(others), &mut write)
    }
}

fn text<'v>(target: &Target, value: &'v Value) -> Result<Option<&'v str>, StreamError> {
    match value {
        Value::Null => Ok(None),
        Value::Text(bytes) => {
            std::str::from_utf8(bytes)
                .map(Some)
                .map_err(|_| StreamError::Schema {
                    table: target.qualified.clone(),
                    detail: "a value is not valid UTF-8 (only UTF8 databases are supported)".into(),
                })
        }
        Value::Binary(_) => Err(StreamError::Protocol(
            "a binary value came although the stream asked for text".into(),
        )),
        Value::Unchanged => Err(StreamError::Protocol(format!(
            "{}: an unchanged TOAST value where a full row was needed",
            target.qualified
        ))),
    }
}

fn literal(target: &Target, value: &Value) -> Result<String, StreamError> {
    Ok(match text(target, value)? {
        Some(text) => quote::literal(text),
        None => "NULL".into(),
    })
}

fn row_values(target: &Target, new: &[Value]) -> Result<String, StreamError> {
    check_width(target, new)?;
    let mut values = String::from("(");
    for (i, value) in new.iter().enumerate() {
        if i > 0 {
            values.push_str(", ");
        }
        values.push_str(&literal(target, value)?);
    }
    values.push(')');
    Ok(values)
}

fn check_width(target: &Target, tuple: &[Value]) -> Result<(), StreamError> {
    if tuple.len() != target.columns.len() {
        return Err(StreamError::Protocol(format!(
            "{}: a tuple of {} columns for a relation of {}",
            target.qualified,
            tuple.len(),
            target.columns.len()
        )));
    }
    Ok(())
}

/// Where a row with these values is stored; `None` when the key is an unchanged TOAST value.
fn shard_of(target: &Target, values: &[Value]) -> Result<Option<Shards>, StreamError> {
    let (Some(key), Some(rule)) = (target.key, target.info.rule.as_ref()) else {
        return Ok(Some(Shards::All));
    };
    let placement = match values.get(key) {
        None | Some(Value::Unchanged) => return Ok(None),
        Some(value) => match text(target, value)? {
            Some(text) => rule.shards_of_text(text),
            None => rule.shards_of(None),
        },
    };
    placement.map(Some).map_err(|error| StreamError::Routing {
        table: target.qualified.clone(),
        detail: error.message,
    })
}

/// `WHERE` matching the row whose identity values are in `tuple`.
fn identity(target: &Target, tuple: &[Value]) -> Result<String, StreamError> {
    identity_with(target, tuple, &mut Params::literal())
}

fn identity_with(
    target: &Target,
    tuple: &[Value],
    params: &mut Params,
) -> Result<String, StreamError> {
    check_width(target, tuple)?;
    if target.identity.is_empty() {
        return Err(StreamError::Schema {
            table: target.qualified.clone(),
            detail: "it has no replica identity: updates and deletes cannot be applied".into(),
        });
    }
    let mut conditions = Vec::with_capacity(target.identity.len());
    for &i in &target.identity {
        let column = &target.columns[i];
        let condition = match &tuple[i] {
            Value::Unchanged => continue,
            value => match text(target, value)? {
                None => format!("{column} IS NULL"),
                Some(text) if NO_EQUALITY.contains(&target.type_oids[i]) => {
                    let value = params.bind("text", quote::literal(text));
                    format!("{column}::text = {value}")
                }
                Some(text) => {
                    let value = params.bind(&target.types[i], quote::literal(text));
                    format!("{column} = {value}")
                }
            },
        };
        conditions.push(condition);
    }
    let conditions = conditions.join(" AND ");
    Ok(if target.whole_row {
        format!(
            "ctid = (SELECT ctid FROM {} WHERE {conditions} LIMIT 1)",
            target.qualified
        )
    } else {
        conditions
    })
}

/// The tuple that identifies the old row: the old tuple when sent, else the new one (the
/// identity did not change).
fn old_identity<'t>(old: Option<&'t OldTuple>, new: &'t [Value]) -> &'t [Value] {
    match old {
        Some(OldTuple::Key(values)) | Some(OldTuple::Full(values)) => values,
        None => new,
    }
}

/// Where the old row of an update or delete is, when the message says.
fn old_shard(
    target: &Target,
    old: Option<&OldTuple>,
    new: Option<&[Value]>,
) -> Result<Option<Shards>, StreamError> {
    if target.key.is_none() {
        return Ok(Some(Shards::All));
    }
    if !target.identity_has_key {
        return Ok(None);
    }
    match (old, new) {
        (Some(old), _) => shard_of(target, old_identity(Some(old), &[])),
        // No old tuple: the identity, and with it the key, did not change.
        (None, Some(new)) => shard_of(target, new),
        (None, None) => Ok(None),
    }
}

/// Whether applying this update needs the values its new tuple left out (unchanged TOAST):
/// the row may move to another shard, which needs all of it.
pub fn missing_values(
    target: &Target,
    old: Option<&OldTuple>,
    new: &[Value],
) -> Result<bool, StreamError> {
    if !new.contains(&Value::Unchanged) || target.key.is_none() {
        return Ok(false);
    }
    let Some(to) = shard_of(target, new)? else {
        return Ok(true);
    };
    Ok(old_shard(target, old, Some(new))? != Some(to))
}

/// `SELECT` reading on the source the current values of the row the new tuple identifies
/// (to fill unchanged TOAST values of a row that moves shard).
pub fn lookup_sql(target: &Target, new: &[Value]) -> Result<String, StreamError> {
    let columns: Vec<String> = target
        .columns
        .iter()
        .map(|c| format!("{c}::text"))
        .collect();
    let mut by_new = target.clone();
    by_new.whole_row = false;
    Ok(format!(
        "SELECT {} FROM ONLY {} WHERE {} LIMIT 1",
        columns.join(", "),
        target.qualified,
        identity(&by_new, new)?
    ))
}

/// Writes an INSERT.
pub fn insert(out: &mut Out<'_>, target: &Target, new: &[Value]) -> Result<(), StreamError> {
    let Some(shards) = shard_of(target, new)? else {
        return Err(StreamError::Protocol(format!(
            "{}: an INSERT without its sharding key",
            target.qualified
        )));
    };
    out.each(&shards, |sql| sql.insert(target, new))
}

/// Writes a DELETE.
pub fn delete(out: &mut Out<'_>, target: &Target, old: &OldTuple) -> Result<(), StreamError> {
    let old_values = old_identity(Some(old), &[]);
    let shards = old_shard(target, Some(old), None)?.unwrap_or(Shards::All);
    let mut statement = None;
    out.each(&shards, |sql| {
        hold_or_execute(
            sql,
            target,
            Some(RowChange::Delete(old_values)),
            &mut statement,
            || {
                let mut params = Params::prepared();
                let condition = identity_with(target, old_values, &mut params)?;
                let shape = format!("DELETE FROM {} WHERE {condition}", target.qualified);
                Ok((shape, params))
            },
        )
    })
}

/// Writes one change on one shard: held by the shard's net when `change` is given and the
/// net takes it, else as the prepared statement `build` makes (built once, for the first
/// shard that needs it, and kept in `statement` for the others).
fn hold_or_execute(
    sql: &mut ShardSql,
    target: &Target,
    change: Option<RowChange<'_>>,
    statement: &mut Option<(String, Params)>,
    build: impl FnOnce() -> Result<(String, Params), StreamError>,
) -> Result<(), StreamError> {
    if change.is_some_and(|change| sql.hold(target, change)) {
        return Ok(());
    }
    if statement.is_none() {
        *statement = Some(build()?);
    }
    if let Some((shape, params)) = statement {
        sql.execute(shape, params);
    }
    Ok(())
}

fn set_list(target: &Target, new: &[Value], params: &mut Params) -> Result<String, StreamError> {
    let mut set = String::new();
    for (i, value) in new.iter().enumerate() {
        if *value == Value::Unchanged {
            continue;
        }
        if !set.is_empty() {
            set.push_str(", ");
        }
        let value = match value {
            Value::Null => "NULL".to_string(),
            value => params.bind(&target.types[i], literal(target, value)?),
        };
        let _ = write!(set, "{} = {value}", target.columns[i]);
    }
    Ok(set)
}

/// Writes an UPDATE. When [`missing_values`] said so, `new` must have been completed first.
pub fn update(
    out: &mut Out<'_>,
    target: &Target,
    old: Option<&OldTuple>,
    new: &[Value],
) -> Result<(), StreamError> {
    check_width(target, new)?;
    let to = shard_of(target, new)?;
    let from = old_shard(target, old, Some(new))?;
    match (from, to) {
        // Same shard (or every shard): update in place.
        (Some(from), Some(to)) if from == to => {
            if new.iter().all(|v| *v == Value::Unchanged) {
                return Ok(());
            }
            // Held only when the identity did not change (no old tuple came).
            let change = old.is_none().then_some(RowChange::Update(new));
            let mut statement = None;
            out.each(&to, |sql| {
                hold_or_execute(sql, target, change, &mut statement, || {
                    let mut params = Params::prepared();
                    let set = set_list(target, new, &mut params)?;
                    let condition = identity_with(target, old_identity(old, new), &mut params)?;
                    let shape = format!("UPDATE {} SET {set} WHERE {condition}", target.qualified);
                    Ok((shape, params))
                })
            })
        }
        // The row moves: delete it where it was, insert it where it goes.
        (Some(from), Some(Shards::One(to))) => {
            let old_where = identity(target, old_identity(old, new))?;
            let delete = format!("DELETE FROM {} WHERE {old_where}", target.qualified);
            out.each(&from, |sql| {
                sql.statement(&delete);
                Ok(())
            })?;
            out.each(&Shards::One(to), |sql| sql.insert(target, new))
        }
        // Where the row was is unknown: the new shard updates it or, when it is not there,
        // inserts it; every other shard deletes it.
        (_, Some(Shards::One(to))) => {
            let set = set_list(target, new, &mut Params::literal())?;
            let old_where = identity(target, old_identity(old, new))?;
            let update = format!("UPDATE {} SET {set} WHERE {old_where}", target.qualified);
            let delete = format!("DELETE FROM {} WHERE {old_where}", target.qualified);
            out.all_but(to, |sql| {
                sql.statement(&delete);
                Ok(())
            })?;
            let new_where = identity(target, new)?;
            let mut typed = Vec::with_capacity(new.len());
            for (i, value) in new.iter().enumerate() {
                typed.push(format!("{}::{}", literal(target, value)?, target.types[i]));
            }
            let insert = format!(
                "INSERT INTO {table} ({columns}) OVERRIDING SYSTEM VALUE SELECT {typed} WHERE NOT EXISTS \
                 (SELECT 1 FROM {table} WHERE {new_where})",
                table = target.qualified,
                columns = target.columns.join(", "),
                typed = typed.join(", "),
            );
            out.each(&Shards::One(to), |sql| {
                if !set.is_empty() {
                    sql.statement(&update);
                }
                sql.statement(&insert);
                Ok(())
            })
        }
        (_, other) => Err(StreamError::Routing {
            table: target.qualified.clone(),
            detail: format!("cannot place the updated row (shards {other:?})"),
        }),
    }
}

/// Writes a TRUNCATE of `tables` (quoted names) on every shard.
pub fn truncate(out: &mut Out<'_>, tables: &[String]) -> Result<(), StreamError> {
    if tables.is_empty() {
        return Ok(());
    }
    let statement = format!("TRUNCATE {}", tables.join(", "));
    out.each(&Shards::All, |sql| {
        sql.statement(&statement);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::reshard::stream::tables::TableInfo;
    use crate::router::plan::ShardingSchema;
    use crate::router::sharding::shard_of;
    use crate::router::sharding::KeyValue;

    const SHARDS: usize = 2;

    fn rule() -> crate::router::plan::TableRule {
        let mut text = String::new();
        for shard in 0..SHARDS {
            text.push_str(&format!("[[databases]]\nname = \"db\"\nshard = {shard}\n"));
        }
        text.push_str(
            "[[sharded_tables]]\ndatabase = \"db\"\nname = \"t\"\ncolumn = \"k\"\ndata_type = \"bigint\"\n",
        );
        let config = pgdog_config::Config::from_str(&text, "pgdog.toml").unwrap();
        ShardingSchema::new(&config, "db")
            .table_rule(None, "t", &[])
            .unwrap()
    }

    /// Table `t (id, k, body)`: identity `id`; sharded by `k` unless `everywhere`.
    fn target(identity: &[usize], everywhere: bool, whole_row: bool) -> Target {
        let rule = (!everywhere).then(rule);
        let key = rule.as_ref().map(|_| 1);
        Target {
            info: Arc::new(TableInfo::test_table(rule, false)),
            qualified: "\"public\".\"t\"".into(),
            columns: vec!["id".into(), "k".into(), "body".into()],
            identity: identity.to_vec(),
            whole_row,
            full_old_tuple: whole_row,
            key,
            identity_has_key: whole_row || key.is_some_and(|k| identity.contains(&k)),
            type_oids: vec![20, 20, 25],
            types: vec!["bigint".into(), "bigint".into(), "text".into()],
        }
    }

    fn t(text: &str) -> Value {
        Value::Text(Bytes::copy_from_slice(text.as_bytes()))
    }

    fn shard(k: i64) -> usize {
        shard_of(&KeyValue::Int(k), SHARDS)
    }

    /// Two keys on different shards.
    fn keys_on_two_shards() -> (i64, i64) {
        let a = 1;
        let b = (2..100).find(|k| shard(*k) != shard(a)).unwrap();
        (a, b)
    }

    fn run(write: impl FnOnce(&mut Out<'_>) -> Result<(), StreamError>) -> Vec<String> {
        let mut shards: Vec<ShardSql> = (0..SHARDS).map(|_| ShardSql::default()).collect();
        let active = vec![true; SHARDS];
        let mut out = Out {
            shards: &mut shards,
            active: &active,
        };
        write(&mut out).unwrap();
        // The PREPAREs a shard runs first, then its batch.
        shards
            .into_iter()
            .map(|s| {
                let mut all: String = s.prepares.iter().map(|p| format!("{p};\n")).collect();
                all.push_str(&s.sql);
                all
            })
            .collect()
    }

    #[test]
    fn inserts_go_to_their_shard_and_merge() {
        let target = target(&[0], false, false);
        let (a, _) = keys_on_two_shards();
        let sql = run(|out| {
            insert(out, &target, &[t("1"), t(&a.to_string()), t("it's")])?;
            insert(out, &target, &[t("2"), t(&a.to_string()), Value::Null])
        });
        assert_eq!(
            sql[shard(a)],
            format!(
                "INSERT INTO \"public\".\"t\" (id, k, body) OVERRIDING SYSTEM VALUE VALUES ('1', '{a}', 'it''s'),\n('2', '{a}', NULL)"
            )
        );
        assert!(sql[1 - shard(a)].is_empty());
    }

    #[test]
    fn updates_in_place_are_prepared_once_and_skip_unchanged_toast() {
        let target = target(&[0, 1], false, false);
        let (a, _) = keys_on_two_shards();
        let sql = run(|out| {
            update(
                out,
                &target,
                None,
                &[t("1"), t(&a.to_string()), Value::Unchanged],
            )?;
            update(
                out,
                &target,
                None,
                &[t("2"), t(&a.to_string()), Value::Unchanged],
            )
        });
        let on = &sql[shard(a)];
        assert_eq!(on.matches("PREPARE").count(), 1, "{on}");
        assert!(
            on.contains(
                "AS UPDATE \"public\".\"t\" SET id = $1, k = $2 WHERE id = $3 AND k = $4;\n"
            ),
            "{on}"
        );
        assert!(
            on.contains(&format!("EXECUTE pgdog_apply_1('2', '{a}', '2', '{a}')")),
            "{on}"
        );
        assert!(!on.contains("body"), "{on}");
    }

    #[test]
    fn a_key_change_with_the_key_in_the_identity_moves_the_row() {
        let target = target(&[0, 1], false, false);
        let (a, b) = keys_on_two_shards();
        let old = OldTuple::Key(vec![t("1"), t(&a.to_string()), Value::Null]);
        let sql = run(|out| {
            update(
                out,
                &target,
                Some(&old),
                &[t("1"), t(&b.to_string()), t("x")],
            )
        });
        assert_eq!(
            sql[shard(a)],
            format!("DELETE FROM \"public\".\"t\" WHERE id = '1' AND k = '{a}'")
        );
        assert_eq!(
            sql[shard(b)],
            format!("INSERT INTO \"public\".\"t\" (id, k, body) OVERRIDING SYSTEM VALUE VALUES ('1', '{b}', 'x')")
        );
    }

    #[test]
    fn an_unknown_old_shard_updates_or_inserts_there_and_deletes_elsewhere() {
        let target = target(&[0], false, false);
        let (a, _) = keys_on_two_shards();
        let new = [t("1"), t(&a.to_string()), t("x")];
        assert!(!missing_values(&target, None, &new).unwrap());
        let sql = run(|out| update(out, &target, None, &new));
        let there = &sql[shard(a)];
        assert!(
            there.starts_with("UPDATE \"public\".\"t\" SET id = '1'"),
            "{there}"
        );
        assert!(
            there.contains("INSERT INTO \"public\".\"t\" (id, k, body) OVERRIDING SYSTEM VALUE SELECT '1'::bigint"),
            "{there}"
        );
        assert!(there.contains("WHERE NOT EXISTS (SELECT 1 FROM \"public\".\"t\" WHERE id = '1')"));
        assert_eq!(
            sql[1 - shard(a)],
            "DELETE FROM \"public\".\"t\" WHERE id = '1'"
        );
        // With an unchanged TOAST value the row must be completed first.
        let partial = [t("1"), t(&a.to_string()), Value::Unchanged];
        assert!(missing_values(&target, None, &partial).unwrap());
        assert_eq!(
            lookup_sql(&target, &partial).unwrap(),
            "SELECT id::text, k::text, body::text FROM ONLY \"public\".\"t\" WHERE id = '1' LIMIT 1"
        );
    }

    #[test]
    fn deletes_without_the_key_go_everywhere_and_whole_rows_match_one() {
        let keyed = target(&[0], false, false);
        let sql = run(|out| {
            delete(
                out,
                &keyed,
                &OldTuple::Key(vec![t("5"), Value::Null, Value::Null]),
            )
        });
        assert!(sql
            .iter()
            .all(|s| s.contains("PREPARE pgdog_apply_1 (bigint) AS DELETE")));
        let full = target(&[0, 1, 2], true, true);
        let sql = run(|out| {
            delete(
                out,
                &full,
                &OldTuple::Full(vec![t("5"), Value::Null, t("b")]),
            )
        });
        assert!(
            sql[0].contains(
                "DELETE FROM \"public\".\"t\" WHERE ctid = (SELECT ctid FROM \"public\".\"t\" WHERE id = $1 AND k IS NULL AND body = $2 LIMIT 1)"
            ),
            "{}",
            sql[0]
        );
        assert_eq!(sql[0], sql[1]);
    }

    #[test]
    fn truncate_and_inactive_shards() {
        let mut shards: Vec<ShardSql> = (0..SHARDS).map(|_| ShardSql::default()).collect();
        let active = [true, false];
        let mut out = Out {
            shards: &mut shards,
            active: &active,
        };
        truncate(&mut out, &["\"public\".\"t\"".into()]).unwrap();
        assert_eq!(shards[0].sql, "TRUNCATE \"public\".\"t\"");
        assert!(
            shards[1].sql.is_empty(),
            "a shard that has the transaction gets nothing"
        );
    }
}
