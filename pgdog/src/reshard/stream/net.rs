//! The net effect of a run of row changes on one shard. Every change of a row is keyed by the
//! row's identity (its primary key as the source printed it); repeated changes of one row
//! collapse into one (a counter updated a thousand times is written once, an insert followed
//! by updates becomes one insert, an insert followed by a delete becomes nothing), and what
//! remains is written as one set-based statement per table and kind: deletes, then updates
//! (grouped by the columns they set), then inserts, each reading one array per column through
//! `unnest`. The run is applied inside one destination transaction, so readers never see the
//! steps in between, and the end state is the one the changes lead to.
//!
//! Only tables where this is safe take part: a usable identity (no whole-row matching, no
//! types without equality), no unique index or exclusion constraint besides the identity (the
//! new order of the steps could trip one), and columns `unnest` can carry (no array types, at
//! most 100). Changes the net cannot express (a key that changes, an impossible sequence) are
//! refused and written as statements of their own after everything held.

use std::collections::HashMap;

use bytes::Bytes;

use super::pgoutput::Value;
use super::tables::Target;

/// Types without an equality operator (`json`, geometric types, `xml`): no identity of these.
pub const NO_EQUALITY: [u32; 9] = [114, 142, 600, 601, 602, 603, 604, 628, 718];

/// PostgreSQL's limit on function arguments (`unnest` takes one array per column).
const MAX_COLUMNS: usize = 100;

/// A row change offered to the [`Net`].
#[derive(Debug, Clone, Copy)]
pub enum RowChange<'a> {
    /// A new row (every column).
    Insert(&'a [Value]),
    /// The new version of a row whose identity did not change (unchanged TOAST values `u`).
    Update(&'a [Value]),
    /// A deleted row: a tuple with (at least) the identity columns.
    Delete(&'a [Value]),
}

/// What a run of changes did to one row.
#[derive(Debug, Clone, PartialEq)]
enum Effect {
    /// It was not there and now is (every column).
    Insert(Vec<Value>),
    /// It was there and these columns changed (`Unchanged`: not touched).
    Update(Vec<Value>),
    /// It was there and is gone.
    Delete,
    /// It was there, was deleted, and a row with the same identity came (every column).
    Replace(Vec<Value>),
    /// It was not there and is not (inserted, then deleted).
    Gone,
}

/// The identity values of a row, as text.
type Key = Vec<Bytes>;

/// One table's rows in the run.
#[derive(Debug)]
struct TableNet {
    target: Target,
    /// Whether the table takes part at all (see the module docs).
    eligible: bool,
    rows: Vec<(Key, Effect)>,
    index: HashMap<Key, usize>,
}

/// A set-based statement: `shape` with `$n` parameters of `types` (arrays) and `values`
/// (quoted array literals).
#[derive(Debug, Clone, PartialEq)]
pub struct Bulk {
    /// The statement with `$1`, `$2`, ...
    pub shape: String,
    /// Each parameter's SQL type.
    pub types: Vec<String>,
    /// Each parameter's value as a quoted literal.
    pub values: Vec<String>,
}

/// Row changes held for one shard, by table in order of first appearance.
#[derive(Debug, Default)]
pub struct Net {
    tables: Vec<TableNet>,
    by_name: HashMap<String, usize>,
    bytes: usize,
}

impl Net {
    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        // Every held change adds to `bytes` (a held tuple has its identity columns); `take` and
        // `clear` reset both.
        self.bytes == 0
    }

    /// About how many bytes of values are held (what the statements will carry).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Holds `change` of a row of `target`; false when it cannot be held (the caller writes
    /// what is held, then the change as a statement of its own).
    pub fn absorb(&mut self, target: &Target, change: RowChange<'_>) -> bool {
        let at = match self.by_name.get(&target.qualified) {
            Some(&at) => at,
            None => {
                self.tables.push(TableNet {
                    eligible: eligible(target),
                    target: target.clone(),
                    rows: Vec::new(),
                    index: HashMap::new(),
                });
                self.by_name
                    .insert(target.qualified.clone(), self.tables.len() - 1);
                self.tables.len() - 1
            }
        };
        let table = &mut self.tables[at];
        if table.target.columns != target.columns || table.target.types != target.types {
            // The table's shape changed: what is held is written first.
            if !table.rows.is_empty() {
                return false;
            }
            table.target = target.clone();
            table.eligible = eligible(target);
        }
        if !table.eligible {
            return false;
        }
        let tuple = match change {
            RowChange::Insert(t) | RowChange::Update(t) | RowChange::Delete(t) => t,
        };
        if tuple.len() != target.columns.len() || !tuple.iter().all(is_text) {
            return false;
        }
        let Some(key) = key_of(target, tuple) else {
            return false;
        };
        let slot = table.index.get(&key).copied();
        let current = slot.map(|i| &table.rows[i].1);
        let Some(next) = next_effect(current, change) else {
            return false;
        };
        self.bytes += tuple_bytes(tuple);
        match slot {
            Some(i) => table.rows[i].1 = next,
            None => {
                table.index.insert(key.clone(), table.rows.len());
                table.rows.push((key, next));
            }
        }
        true
    }

    /// The statements that apply everything held, and forgets it.
    pub fn take(&mut self) -> Vec<Bulk> {
        let mut out = Vec::new();
        for table in &mut self.tables {
            let rows = std::mem::take(&mut table.rows);
            table.index.clear();
            write_table(&table.target, rows, &mut out);
        }
        self.bytes = 0;
        out
    }

    /// Forgets everything held.
    pub fn clear(&mut self) {
        *self = Net::default();
    }
}

/// Whether a table's changes can be held (see the module docs).
fn eligible(target: &Target) -> bool {
    !target.whole_row
        && !target.identity.is_empty()
        && !target.info.other_unique
        && target.columns.len() <= MAX_COLUMNS
        && target
            .identity
            .iter()
            .all(|&i| !NO_EQUALITY.contains(&target.type_oids.get(i).copied().unwrap_or(0)))
        && target.types.iter().all(|t| !t.ends_with("[]"))
}

fn is_text(value: &Value) -> bool {
    match value {
        Value::Null | Value::Unchanged => true,
        Value::Text(bytes) => std::str::from_utf8(bytes).is_ok(),
        Value::Binary(_) => false,
    }
}

/// The identity values of `tuple`; `None` when one is NULL or not sent.
fn key_of(target: &Target, tuple: &[Value]) -> Option<Key> {
    target
        .identity
        .iter()
        .map(|&i| match tuple.get(i) {
            Some(Value::Text(bytes)) => Some(bytes.clone()),
            _ => None,
        })
        .collect()
}

fn tuple_bytes(tuple: &[Value]) -> usize {
    tuple
        .iter()
        .map(|v| match v {
            Value::Text(bytes) | Value::Binary(bytes) => bytes.len() + 3,
            _ => 5,
        })
        .sum()
}

/// `later` over `earlier`: the columns `later` left unchanged keep `earlier`'s values.
fn merge(earlier: &[Value], later: &[Value]) -> Vec<Value> {
    earlier
        .iter()
        .zip(later)
        .map(|(e, l)| match l {
            Value::Unchanged => e.clone(),
            l => l.clone(),
        })
        .collect()
}

/// What a row's effect becomes with one more change; `None` when the sequence cannot happen
/// on a consistent source (the change is then written as it is).
fn next_effect(current: Option<&Effect>, change: RowChange<'_>) -> Option<Effect> {
    use Effect::*;
    let full = |t: &[Value]| !t.contains(&Value::Unchanged);
    Some(match (current, change) {
        (None | Some(Gone), RowChange::Insert(t)) if full(t) => Insert(t.to_vec()),
        (None, RowChange::Update(t)) => Update(t.to_vec()),
        (None, RowChange::Delete(_)) => Delete,
        (Some(Insert(a)), RowChange::Update(b)) => Insert(merge(a, b)),
        (Some(Insert(_)), RowChange::Delete(_)) => Gone,
        (Some(Update(a)), RowChange::Update(b)) => Update(merge(a, b)),
        (Some(Update(_) | Replace(_)), RowChange::Delete(_)) => Delete,
        (Some(Delete), RowChange::Insert(t)) if full(t) => Replace(t.to_vec()),
        (Some(Replace(a)), RowChange::Update(b)) => Replace(merge(a, b)),
        _ => return None,
    })
}

/// The statements for one table's rows: deletes, updates by set of columns, inserts.
fn write_table(target: &Target, rows: Vec<(Key, Effect)>, out: &mut Vec<Bulk>) {
    let mut deleted: Vec<&Key> = Vec::new();
    let mut inserted: Vec<&[Value]> = Vec::new();
    let mut updated: Vec<(Vec<bool>, Vec<&[Value]>)> = Vec::new();
    for (key, effect) in &rows {
        match effect {
            Effect::Delete => deleted.push(key),
            Effect::Replace(row) => {
                deleted.push(key);
                inserted.push(row);
            }
            Effect::Insert(row) => inserted.push(row),
            Effect::Update(row) => {
                let set: Vec<bool> = row
                    .iter()
                    .enumerate()
                    .map(|(i, v)| *v != Value::Unchanged && !target.identity.contains(&i))
                    .collect();
                if !set.contains(&true) {
                    continue;
                }
                match updated.iter_mut().find(|(s, _)| *s == set) {
                    Some((_, group)) => group.push(row),
                    None => updated.push((set, vec![row])),
                }
            }
            Effect::Gone => {}
        }
    }
    if !deleted.is_empty() {
        out.push(delete(target, &deleted));
    }
    for (set, group) in &updated {
        out.push(update(target, set, group));
    }
    if !inserted.is_empty() {
        out.push(insert(target, &inserted));
    }
}

/// `unnest($1::t1[], $2::t2[], ...) AS v(p1, p2, ...)` over `columns`, with the parameters'
/// types added to `bulk`.
fn unnest(target: &Target, columns: &[usize], bulk: &mut Bulk) -> String {
    let mut args = Vec::with_capacity(columns.len());
    let mut names = Vec::with_capacity(columns.len());
    for (n, &c) in columns.iter().enumerate() {
        bulk.types.push(format!("{}[]", target.types[c]));
        args.push(format!("${}", n + 1));
        names.push(format!("p{}", n + 1));
    }
    format!("unnest({}) AS v({})", args.join(", "), names.join(", "))
}

/// `d.k1 = v.p1 AND d.k2 = v.p2` for the identity columns (the first parameters).
fn match_identity(target: &Target, alias: &str) -> String {
    target
        .identity
        .iter()
        .enumerate()
        .map(|(n, &c)| format!("{alias}.{} = v.p{}", target.columns[c], n + 1))
        .collect::<Vec<_>>()
        .join(" AND ")
}

fn delete(target: &Target, keys: &[&Key]) -> Bulk {
    let mut bulk = empty();
    let from = unnest(target, &target.identity, &mut bulk);
    bulk.shape = format!(
        "DELETE FROM {} AS d USING {from} WHERE {}",
        target.qualified,
        match_identity(target, "d")
    );
    for n in 0..target.identity.len() {
        bulk.values.push(array(keys.iter().map(|k| Some(&k[n]))));
    }
    bulk
}

fn update(target: &Target, set: &[bool], rows: &[&[Value]]) -> Bulk {
    let mut bulk = empty();
    let mut columns = target.identity.clone();
    columns.extend((0..set.len()).filter(|&i| set[i]));
    let from = unnest(target, &columns, &mut bulk);
    let assignments: Vec<String> = columns
        .iter()
        .enumerate()
        .skip(target.identity.len())
        .map(|(n, &c)| format!("{} = v.p{}", target.columns[c], n + 1))
        .collect();
    bulk.shape = format!(
        "UPDATE {} AS u SET {} FROM {from} WHERE {}",
        target.qualified,
        assignments.join(", "),
        match_identity(target, "u")
    );
    for &c in &columns {
        bulk.values.push(array(rows.iter().map(|r| text(&r[c]))));
    }
    bulk
}

fn insert(target: &Target, rows: &[&[Value]]) -> Bulk {
    let mut bulk = empty();
    let columns: Vec<usize> = (0..target.columns.len()).collect();
    let from = unnest(target, &columns, &mut bulk);
    bulk.shape = format!(
        // Identity columns GENERATED ALWAYS take the source's values too.
        "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT * FROM {from}",
        target.qualified,
        target.columns.join(", ")
    );
    for &c in &columns {
        bulk.values.push(array(rows.iter().map(|r| text(&r[c]))));
    }
    bulk
}

fn empty() -> Bulk {
    Bulk {
        shape: String::new(),
        types: Vec::new(),
        values: Vec::new(),
    }
}

fn text(value: &Value) -> Option<&Bytes> {
    match value {
        Value::Text(bytes) => Some(bytes),
        _ => None,
    }
}

/// A quoted array literal of text elements (`None`: NULL): `'{"a","b\"c",NULL}'`.
fn array<'a>(elements: impl Iterator<Item = Option<&'a Bytes>>) -> String {
    let mut out: Vec<u8> = b"'{".to_vec();
    for (i, element) in elements.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let Some(bytes) = element else {
            out.extend(b"NULL");
            continue;
        };
        out.push(b'"');
        for &b in bytes.iter() {
            match b {
                b'"' | b'\\' => out.extend([b'\\', b]),
                b'\'' => out.extend(b"''"),
                b => out.push(b),
            }
        }
        out.push(b'"');
    }
    out.extend(b"}'");
    // Held values are valid UTF-8 (checked when held) and only ASCII was added.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::reshard::stream::tables::TableInfo;

    /// `t (id bigint, n bigint, body text)`, identity `id`.
    fn target(other_unique: bool) -> Target {
        Target {
            info: Arc::new(TableInfo::test_table(None, other_unique)),
            qualified: "\"public\".\"t\"".into(),
            columns: vec!["id".into(), "n".into(), "body".into()],
            identity: vec![0],
            whole_row: false,
            full_old_tuple: false,
            key: None,
            identity_has_key: false,
            type_oids: vec![20, 20, 25],
            types: vec!["bigint".into(), "bigint".into(), "text".into()],
        }
    }

    fn t(s: &str) -> Value {
        Value::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn row(id: &str, n: &str, body: Value) -> Vec<Value> {
        vec![t(id), t(n), body]
    }

    #[test]
    fn repeated_updates_of_a_row_become_one() {
        let target = target(false);
        let mut net = Net::default();
        for n in 1..=1000 {
            let r = row("7", &n.to_string(), Value::Unchanged);
            assert!(net.absorb(&target, RowChange::Update(&r)));
        }
        let bulks = net.take();
        assert_eq!(bulks.len(), 1);
        assert_eq!(
            bulks[0].shape,
            "UPDATE \"public\".\"t\" AS u SET n = v.p2 FROM unnest($1, $2) AS v(p1, p2) WHERE u.id = v.p1"
        );
        assert_eq!(bulks[0].types, ["bigint[]", "bigint[]"]);
        assert_eq!(bulks[0].values, ["'{\"7\"}'", "'{\"1000\"}'"]);
        assert!(net.is_empty());
    }

    #[test]
    fn effects_of_sequences() {
        let target = target(false);
        let mut net = Net::default();
        let a = row("1", "1", t("a"));
        // Insert then update (TOAST unchanged): one insert with the merged row.
        assert!(net.absorb(&target, RowChange::Insert(&a)));
        assert!(net.absorb(&target, RowChange::Update(&row("1", "2", Value::Unchanged))));
        // Insert then delete: nothing.
        assert!(net.absorb(&target, RowChange::Insert(&row("2", "1", Value::Null))));
        assert!(net.absorb(&target, RowChange::Delete(&row("2", "", Value::Null))));
        // Delete then insert: a delete and an insert.
        assert!(net.absorb(&target, RowChange::Delete(&row("3", "", Value::Null))));
        assert!(net.absorb(&target, RowChange::Insert(&row("3", "9", t("it's \"x\"")))));
        // Update then delete: a delete.
        assert!(net.absorb(&target, RowChange::Update(&row("4", "5", t("b")))));
        assert!(net.absorb(&target, RowChange::Delete(&row("4", "", Value::Null))));
        // Impossible: an insert of a row already inserted.
        assert!(!net.absorb(&target, RowChange::Insert(&a)));
        let bulks = net.take();
        let shapes: Vec<&str> = bulks
            .iter()
            .map(|b| b.shape.split(' ').next().unwrap_or(""))
            .collect();
        assert_eq!(shapes, ["DELETE", "INSERT"]);
        assert_eq!(bulks[0].values, ["'{\"3\",\"4\"}'"]);
        assert_eq!(
            bulks[1].values,
            [
                "'{\"1\",\"3\"}'",
                "'{\"2\",\"9\"}'",
                "'{\"a\",\"it''s \\\"x\\\"\"}'"
            ]
        );
    }

    #[test]
    fn tables_with_another_unique_index_are_not_held() {
        let mut net = Net::default();
        let r = row("1", "1", Value::Null);
        assert!(!net.absorb(&target(true), RowChange::Insert(&r)));
        assert!(net.take().is_empty());
        // Nor rows whose identity is not sent.
        let mut net = Net::default();
        let r = row("", "1", Value::Null);
        let r = [Value::Unchanged, r[1].clone(), r[2].clone()];
        assert!(!net.absorb(&target(false), RowChange::Update(&r)));
    }

    #[test]
    fn updates_are_grouped_by_the_columns_they_set() {
        let target = target(false);
        let mut net = Net::default();
        assert!(net.absorb(&target, RowChange::Update(&row("1", "1", Value::Unchanged))));
        assert!(net.absorb(&target, RowChange::Update(&row("2", "1", t("x")))));
        assert!(net.absorb(&target, RowChange::Update(&row("3", "1", Value::Unchanged))));
        let bulks = net.take();
        assert_eq!(bulks.len(), 2);
        assert_eq!(bulks[0].values[0], "'{\"1\",\"3\"}'");
        assert!(bulks[1].shape.contains("SET n = v.p2, body = v.p3"));
        assert_eq!(bulks[1].values[2], "'{\"x\"}'");
    }
}
