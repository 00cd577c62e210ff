//! Turning one decoded change into SQL on the shards that need it. Inserts go to the new
//! row's shard; an update whose row changes shard becomes a delete on the old shard and an
//! insert on the new one; when the message cannot say where the old row was (the sharding key
//! is not part of the replica identity), the new shard updates the row or inserts it, and the
//! other shards delete it. Unchanged TOAST values (`u`) are never written: updates set only
//! the columns that came, and a row that moves gets them filled in first (see
//! [`missing_values`]). Tables without a rule get every change on every shard.

use std::fmt::Write;

use super::pgoutput::{OldTuple, Value};
use super::tables::Target;
use super::StreamError;
use crate::quote;
use crate::router::route::Shards;

/// Types without an equality operator: rows are matched on their text form.
const NO_EQUALITY: [u32; 9] = [114, 142, 600, 601, 602, 603, 604, 628, 718];

/// The SQL one shard gets in the current batch.
#[derive(Debug, Default)]
pub struct ShardSql {
    /// Statements separated by `;`.
    pub sql: String,
    /// Rows changed (statements written, and rows added to a multi-row INSERT).
    pub rows: u64,
    /// The INSERT that the next row of the same table may extend (`relation`, columns).
    open_insert: Option<(String, usize)>,
}

impl ShardSql {
    fn statement(&mut self, sql: &str) {
        if !self.sql.is_empty() {
            self.sql.push_str(";\n");
        }
        self.sql.push_str(sql);
        self.open_insert = None;
        self.rows += 1;
    }

    /// Takes the SQL so far (the batch goes to the shard).
    pub fn take(&mut self) -> String {
        self.open_insert = None;
        std::mem::take(&mut self.sql)
    }

    fn insert(&mut self, target: &Target, new: &[Value]) -> Result<(), StreamError> {
        let values = row_values(target, new)?;
        let open = (target.qualified.clone(), new.len());
        if self.open_insert.as_ref() == Some(&open) {
            self.sql.push_str(",\n");
            self.sql.push_str(&values);
            self.rows += 1;
            return Ok(());
        }
        let sql = format!(
            "INSERT INTO {} ({}) VALUES {values}",
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
                    format!("{column}::text = {}", quote::literal(text))
                }
                Some(text) => format!("{column} = {}", quote::literal(text)),
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
    let statement = format!(
        "DELETE FROM {} WHERE {}",
        target.qualified,
        identity(target, old_values)?
    );
    let shards = old_shard(target, Some(old), None)?.unwrap_or(Shards::All);
    out.each(&shards, |sql| {
        sql.statement(&statement);
        Ok(())
    })
}

fn set_list(target: &Target, new: &[Value]) -> Result<String, StreamError> {
    let mut set = String::new();
    for (i, value) in new.iter().enumerate() {
        if *value == Value::Unchanged {
            continue;
        }
        if !set.is_empty() {
            set.push_str(", ");
        }
        let _ = write!(set, "{} = {}", target.columns[i], literal(target, value)?);
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
    let set = set_list(target, new)?;
    let old_where = identity(target, old_identity(old, new))?;
    let update = format!("UPDATE {} SET {set} WHERE {old_where}", target.qualified);
    match (from, to) {
        // Same shard (or every shard): update in place.
        (Some(from), Some(to)) if from == to => out.each(&to, |sql| {
            if !set.is_empty() {
                sql.statement(&update);
            }
            Ok(())
        }),
        // The row moves: delete it where it was, insert it where it goes.
        (Some(from), Some(Shards::One(to))) => {
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
                "INSERT INTO {table} ({columns}) SELECT {typed} WHERE NOT EXISTS \
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
