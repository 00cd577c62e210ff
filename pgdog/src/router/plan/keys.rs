//! Sharding keys in a statement: the tables in scope (FROM items and the target table) and
//! what their key columns are compared with, the conditions on keys a WHERE clause holds
//! ([`KeyFilter`]), and, at routing time, the shards those conditions leave once parameters
//! are known ([`Target`]).
//!
//! Recognised conditions: `key = v`, `v = key`, `key IN (v, ...)`, `key = ANY($n)` (an array
//! parameter, text `{1,2}` or binary), `key = ANY('{...}')`, `key = ANY(ARRAY[v, ...])`,
//! where `v` is a constant or a parameter, casts allowed (`$1::bigint`, `'5'::int`). `AND`
//! intersects the shards of the conditions that restrict; `OR` unites them when every branch
//! restricts. A NULL value matches no row (no shard needs the statement); a value that is not
//! of the key's type restricts nothing (every shard: PostgreSQL reports the type error).

use std::collections::BTreeSet;

use pg_query::protobuf::{self, BoolExprType, Node};
use pg_query::NodeEnum;

use super::schema::{decode_binary, ShardingSchema, TableClass, TableRule};
use super::tree::{names, operator, strip_casts};
use crate::router::route::{Params, Shards};
use crate::router::sharding::{DataType, KeyValue};

/// A value in the statement that may be a sharding key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum KeyExpr {
    /// A constant's text (as PostgreSQL's input function reads it); `None` for NULL.
    Const(Option<String>),
    /// Parameter `$n + 1` (0-based index).
    Param(usize),
    /// An array constant's text (`'{1,2,3}'`): each element is a value.
    ArrayText(String),
    /// An array parameter (`ANY($n)`): each element is a value.
    ArrayParam(usize),
}

/// The key value(s) of a node when it is a constant or a parameter (casts allowed).
pub(super) fn key_expr(node: &Node) -> Option<KeyExpr> {
    match strip_casts(node).node.as_ref()? {
        NodeEnum::AConst(value) => Some(KeyExpr::Const(super::tree::const_text(value))),
        NodeEnum::ParamRef(param) => param_index(param).map(KeyExpr::Param),
        _ => None,
    }
}

/// The 0-based index of `$n`.
pub(super) fn param_index(param: &protobuf::ParamRef) -> Option<usize> {
    usize::try_from(param.number).ok()?.checked_sub(1)
}

/// The values of the right side of `= ANY(...)`: an array parameter, an array constant or
/// `ARRAY[...]` of constants and parameters.
fn array_values(node: &Node) -> Option<Vec<KeyExpr>> {
    match strip_casts(node).node.as_ref()? {
        NodeEnum::ParamRef(param) => Some(vec![KeyExpr::ArrayParam(param_index(param)?)]),
        NodeEnum::AConst(value) => match super::tree::const_text(value) {
            Some(text) => Some(vec![KeyExpr::ArrayText(text)]),
            None => Some(vec![KeyExpr::Const(None)]),
        },
        NodeEnum::AArrayExpr(array) => array.elements.iter().map(key_expr).collect(),
        _ => None,
    }
}

/// What a WHERE clause says about the sharding keys of the tables in scope.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum KeyFilter {
    /// Nothing usable: every shard.
    Unknown,
    /// A key of `rule` equals one of `values`.
    Key {
        /// The rule of the table whose key it is.
        rule: TableRule,
        /// The values.
        values: Vec<KeyExpr>,
    },
    /// Every condition holds (intersection of the restricting ones).
    And(Vec<KeyFilter>),
    /// One of the conditions holds (union; every branch restricts).
    Or(Vec<KeyFilter>),
}

impl KeyFilter {
    /// `AND` of filters, simplified.
    pub(super) fn and(filters: Vec<KeyFilter>) -> KeyFilter {
        let mut known: Vec<KeyFilter> = filters
            .into_iter()
            .filter(|filter| *filter != KeyFilter::Unknown)
            .collect();
        match known.len() {
            0 => KeyFilter::Unknown,
            1 => known.remove(0),
            _ => KeyFilter::And(known),
        }
    }

    /// `OR` of filters, simplified: unknown when a branch is.
    pub(super) fn or(mut filters: Vec<KeyFilter>) -> KeyFilter {
        if filters.is_empty() || filters.contains(&KeyFilter::Unknown) {
            return KeyFilter::Unknown;
        }
        if filters.len() == 1 {
            return filters.remove(0);
        }
        KeyFilter::Or(filters)
    }

    /// The shards these conditions leave, with `params`.
    pub(super) fn target(&self, params: &Params<'_>) -> Target {
        match self {
            KeyFilter::Unknown => Target::All,
            KeyFilter::Key { rule, values } => values
                .iter()
                .map(|value| value_target(rule, value, params))
                .fold(Target::none(), Target::union),
            KeyFilter::And(filters) => filters
                .iter()
                .map(|filter| filter.target(params))
                .fold(Target::All, Target::intersect),
            KeyFilter::Or(filters) => filters
                .iter()
                .map(|filter| filter.target(params))
                .fold(Target::none(), Target::union),
        }
    }
}

/// The shards a statement needs, as conditions narrow them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Target {
    /// Every shard.
    All,
    /// These shards; empty when no row can match (any one shard answers).
    Some(BTreeSet<usize>),
}

impl Target {
    /// No shard.
    pub(super) fn none() -> Target {
        Target::Some(BTreeSet::new())
    }

    /// One shard.
    pub(super) fn one(shard: usize) -> Target {
        Target::Some(BTreeSet::from([shard]))
    }

    fn union(self, other: Target) -> Target {
        match (self, other) {
            (Target::Some(mut a), Target::Some(b)) => {
                a.extend(b);
                Target::Some(a)
            }
            _ => Target::All,
        }
    }

    fn intersect(self, other: Target) -> Target {
        match (self, other) {
            (Target::All, other) | (other, Target::All) => other,
            (Target::Some(a), Target::Some(b)) => Target::Some(&a & &b),
        }
    }

    /// As [`Shards`] of `count`: no shard is `Any` (nothing matches, one shard says so).
    pub(super) fn shards(&self, count: usize) -> Shards {
        match self {
            Target::All if count <= 1 => Shards::One(0),
            Target::All => Shards::All,
            Target::Some(set) if set.is_empty() => Shards::Any,
            Target::Some(set) => Shards::from_list(set.iter().copied().collect(), count),
        }
    }
}

/// A parameter or array element decoded as a key.
pub(super) enum Decoded<'a> {
    /// SQL NULL.
    Null,
    /// A value of the key's type.
    Key(KeyValue<'a>),
    /// Not readable as the key's type (or no such parameter).
    Unknown,
}

/// Parameter `index` read as a key of `data_type`: text format with the type's input rules,
/// binary by the parameter's type (or, when unspecified, the key's): integers by length,
/// text as UTF-8, uuid as 16 bytes.
pub(super) fn decode_param<'a>(
    data_type: DataType,
    params: &Params<'a>,
    index: usize,
) -> Decoded<'a> {
    let Some((value, binary, oid)) = params.get(index) else {
        return Decoded::Unknown;
    };
    let Some(bytes) = value else {
        return Decoded::Null;
    };
    if binary {
        decode_binary_typed(data_type, oid, bytes)
    } else {
        decode_text(data_type, bytes)
    }
}

/// Text-format bytes of a key.
fn decode_text(data_type: DataType, bytes: &[u8]) -> Decoded<'_> {
    match std::str::from_utf8(bytes) {
        Ok(text) => match KeyValue::parse(data_type, text) {
            Ok(key) => Decoded::Key(key),
            Err(_) => Decoded::Unknown,
        },
        Err(_) => Decoded::Unknown,
    }
}

/// Type OIDs of the binary values the planner reads.
mod oid {
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const NAME: u32 = 19;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const UUID: u32 = 2950;
}

/// Binary bytes of a key whose type OID is `oid` (0: unspecified, the key's own type).
fn decode_binary_typed(data_type: DataType, oid: u32, bytes: &[u8]) -> Decoded<'_> {
    let as_type = match oid {
        0 => data_type,
        oid::INT2 | oid::INT4 | oid::INT8 => DataType::Bigint,
        oid::TEXT | oid::VARCHAR | oid::NAME | oid::BPCHAR => {
            // A text parameter compared with the key: read the text as the key's type.
            return decode_text(data_type, bytes);
        }
        oid::UUID => DataType::Uuid,
        _ => return Decoded::Unknown,
    };
    if as_type != data_type {
        return Decoded::Unknown;
    }
    match decode_binary(data_type, bytes) {
        Some(key) => Decoded::Key(key),
        None => Decoded::Unknown,
    }
}

/// The shards one value of a condition on `rule`'s key selects (reads: a value no mapping
/// rule takes may be anywhere).
fn value_target(rule: &TableRule, value: &KeyExpr, params: &Params<'_>) -> Target {
    let of = |decoded: Decoded| match decoded {
        Decoded::Null => Target::none(),
        Decoded::Key(key) => rule.shard(&key).map_or(Target::All, Target::one),
        Decoded::Unknown => Target::All,
    };
    match value {
        KeyExpr::Const(None) => Target::none(),
        KeyExpr::Const(Some(text)) => of(decode_text(rule.data_type(), text.as_bytes())),
        KeyExpr::Param(index) => of(decode_param(rule.data_type(), params, *index)),
        KeyExpr::ArrayText(text) => match parse_array_text(text) {
            Some(elements) => elements
                .iter()
                .map(|element| match element {
                    None => Target::none(),
                    Some(text) => of(decode_text(rule.data_type(), text.as_bytes())),
                })
                .fold(Target::none(), Target::union),
            None => Target::All,
        },
        KeyExpr::ArrayParam(index) => match params.get(*index) {
            Some((None, _, _)) => Target::none(),
            Some((Some(bytes), false, _)) => {
                match std::str::from_utf8(bytes).ok().and_then(parse_array_text) {
                    Some(elements) => elements
                        .iter()
                        .map(|element| match element {
                            None => Target::none(),
                            Some(text) => of(decode_text(rule.data_type(), text.as_bytes())),
                        })
                        .fold(Target::none(), Target::union),
                    None => Target::All,
                }
            }
            Some((Some(bytes), true, _)) => match parse_array_binary(bytes) {
                Some((element_oid, elements)) => elements
                    .into_iter()
                    .map(|element| match element {
                        None => Target::none(),
                        Some(bytes) => {
                            of(decode_binary_typed(rule.data_type(), element_oid, bytes))
                        }
                    })
                    .fold(Target::none(), Target::union),
                None => Target::All,
            },
            None => Target::All,
        },
    }
}

/// The elements of an array in text form (`{1,2,"a b",NULL}`, nested braces flattened);
/// `None` when malformed or with dimension decoration (`[1:2]={...}`).
pub(super) fn parse_array_text(text: &str) -> Option<Vec<Option<String>>> {
    let chars: Vec<char> = text.trim().chars().collect();
    if chars.first() != Some(&'{') {
        return None;
    }
    let mut i = 1;
    let mut depth = 1usize;
    let mut elements = Vec::new();
    // After '{' or ',' an element (or a nested '{') comes.
    let mut expect_element = true;
    let mut after_comma = false;
    while depth > 0 {
        let c = *chars.get(i)?;
        i += 1;
        match c {
            c if c.is_whitespace() => {}
            '{' if expect_element => {
                depth += 1;
                after_comma = false;
            }
            '}' if !after_comma => {
                depth -= 1;
                expect_element = false;
            }
            ',' if !expect_element => {
                expect_element = true;
                after_comma = true;
            }
            '"' if expect_element => {
                let mut value = String::new();
                loop {
                    let c = *chars.get(i)?;
                    i += 1;
                    match c {
                        '\\' => {
                            value.push(*chars.get(i)?);
                            i += 1;
                        }
                        '"' => break,
                        c => value.push(c),
                    }
                }
                elements.push(Some(value));
                expect_element = false;
                after_comma = false;
            }
            ',' | '}' | '"' | '{' => return None,
            _ if expect_element => {
                // Unquoted: up to the next ',' or '}', backslash escapes, trailing spaces
                // dropped; NULL (not escaped) is SQL NULL.
                let mut value = String::new();
                let mut escaped = false;
                i -= 1;
                loop {
                    match *chars.get(i)? {
                        ',' | '}' => break,
                        '\\' => {
                            value.push(*chars.get(i + 1)?);
                            escaped = true;
                            i += 2;
                        }
                        '"' | '{' => return None,
                        c => {
                            value.push(c);
                            i += 1;
                        }
                    }
                }
                let value = value.trim_end();
                if !escaped && value.eq_ignore_ascii_case("null") {
                    elements.push(None);
                } else {
                    elements.push(Some(value.to_string()));
                }
                expect_element = false;
                after_comma = false;
            }
            _ => return None,
        }
    }
    if chars[i..].iter().any(|c| !c.is_whitespace()) {
        return None;
    }
    Some(elements)
}

/// The element type and elements of an array in binary form (any number of dimensions,
/// flattened); `None` when malformed.
pub(super) fn parse_array_binary(bytes: &[u8]) -> Option<(u32, Vec<Option<&[u8]>>)> {
    let mut rest = bytes;
    let mut take = |n: usize| -> Option<&[u8]> {
        if rest.len() < n {
            return None;
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    };
    let int = |b: &[u8]| -> Option<i32> { Some(i32::from_be_bytes(b.try_into().ok()?)) };
    let ndim = int(take(4)?)?;
    let _flags = take(4)?;
    let element_oid = u32::from_be_bytes(take(4)?.try_into().ok()?);
    let ndim = usize::try_from(ndim).ok()?;
    if ndim > 6 {
        return None;
    }
    let mut count: usize = if ndim == 0 { 0 } else { 1 };
    for _ in 0..ndim {
        let size = usize::try_from(int(take(4)?)?).ok()?;
        let _lower_bound = take(4)?;
        count = count.checked_mul(size)?;
    }
    let mut elements = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let len = int(take(4)?)?;
        if len < 0 {
            elements.push(None);
        } else {
            elements.push(Some(take(usize::try_from(len).ok()?)?));
        }
    }
    if !rest.is_empty() {
        return None;
    }
    Some((element_oid, elements))
}

/// A table (or other FROM item) columns can be qualified with.
#[derive(Debug, Clone)]
struct Binding {
    /// The name columns are qualified with: the alias, else the relation name.
    refname: String,
    /// Schema and relation name, when a table is referenced without an alias.
    qualified: Option<(Option<String>, String)>,
    kind: BindingKind,
}

#[derive(Debug, Clone)]
enum BindingKind {
    /// A sharded table named by the config.
    Sharded(TableRule),
    /// A table without an entry naming it: sharded by one of these rules if it has the column.
    Other(Vec<TableRule>),
    /// An omnisharded table, a catalog, a subquery, a function or a CTE.
    Plain,
}

/// The tables and other FROM items a statement's conditions can refer to.
#[derive(Debug, Clone, Default)]
pub(super) struct Scope {
    bindings: Vec<Binding>,
    /// Names of the CTEs visible (not tables).
    ctes: Vec<String>,
    /// Conditions of inner joins (`JOIN ... ON`), which restrict like WHERE.
    join_quals: Vec<Node>,
    /// Key conditions of subqueries in FROM (not under outer joins): no row comes from the
    /// shards they exclude.
    subqueries: Vec<KeyFilter>,
}

impl Scope {
    /// An empty scope seeing the CTE names `ctes`.
    pub(super) fn new(ctes: Vec<String>) -> Scope {
        Scope {
            ctes,
            ..Scope::default()
        }
    }

    /// Adds a table (the target of INSERT/UPDATE/DELETE or a FROM item).
    pub(super) fn add_table(&mut self, schema: &ShardingSchema, table: &protobuf::RangeVar) {
        let schema_name = (!table.schemaname.is_empty()).then(|| table.schemaname.clone());
        let alias = table.alias.as_ref().map(|alias| alias.aliasname.clone());
        let kind = if schema_name.is_none() && self.ctes.contains(&table.relname) {
            BindingKind::Plain
        } else {
            match schema.classify(schema_name.as_deref(), &table.relname) {
                TableClass::Sharded(rule) => BindingKind::Sharded(rule),
                TableClass::Other(rules) => BindingKind::Other(rules),
                TableClass::Omnisharded | TableClass::Catalog => BindingKind::Plain,
            }
        };
        self.bindings.push(Binding {
            refname: alias.clone().unwrap_or_else(|| table.relname.clone()),
            qualified: alias
                .is_none()
                .then(|| (schema_name, table.relname.clone())),
            kind,
        });
    }

    /// Adds the FROM items (tables, joins, subqueries, functions).
    pub(super) fn add_from(&mut self, schema: &ShardingSchema, items: &[Node]) {
        for item in items {
            self.add_from_item(schema, item, true);
        }
    }

    /// Adds a FROM item; `inner`: not under an outer join.
    fn add_from_item(&mut self, schema: &ShardingSchema, item: &Node, inner: bool) {
        match item.node.as_ref() {
            Some(NodeEnum::RangeVar(table)) => self.add_table(schema, table),
            Some(NodeEnum::JoinExpr(join)) => {
                let inner = inner && join.jointype == protobuf::JoinType::JoinInner as i32;
                if let Some(larg) = join.larg.as_deref() {
                    self.add_from_item(schema, larg, inner);
                }
                if let Some(rarg) = join.rarg.as_deref() {
                    self.add_from_item(schema, rarg, inner);
                }
                if inner {
                    if let Some(quals) = join.quals.as_deref() {
                        self.join_quals.push(quals.clone());
                    }
                }
                if let Some(alias) = &join.alias {
                    self.add_plain(&alias.aliasname);
                }
            }
            Some(NodeEnum::RangeSubselect(sub)) => {
                if let Some(NodeEnum::SelectStmt(select)) =
                    sub.subquery.as_deref().and_then(|q| q.node.as_ref())
                {
                    if inner {
                        let filter = super::select::select_filter(select, schema, &self.ctes);
                        self.subqueries.push(filter);
                    }
                }
                let name = sub
                    .alias
                    .as_ref()
                    .map(|a| a.aliasname.as_str())
                    .unwrap_or("");
                self.add_plain(name);
            }
            Some(NodeEnum::RangeFunction(func)) => {
                let name = func
                    .alias
                    .as_ref()
                    .map(|a| a.aliasname.as_str())
                    .unwrap_or("");
                self.add_plain(name);
            }
            _ => self.add_plain(""),
        }
    }

    fn add_plain(&mut self, refname: &str) {
        self.bindings.push(Binding {
            refname: refname.to_string(),
            qualified: None,
            kind: BindingKind::Plain,
        });
    }

    /// The rule of the sharded table whose key column `fields` (a column reference's
    /// parts) names, if it names one for sure.
    pub(super) fn key_rule(&self, fields: &[&str]) -> Option<&TableRule> {
        fn rule_of<'b>(binding: &'b Binding, column: &str) -> Option<&'b TableRule> {
            match &binding.kind {
                BindingKind::Sharded(rule) => (rule.column() == column).then_some(rule),
                BindingKind::Other(rules) => rules.iter().find(|rule| rule.column() == column),
                BindingKind::Plain => None,
            }
        }
        match fields {
            [column] => {
                // The only sharded table named by the config with this key column...
                let mut named = self
                    .bindings
                    .iter()
                    .filter_map(|binding| match &binding.kind {
                        BindingKind::Sharded(rule) if rule.column() == *column => Some(rule),
                        _ => None,
                    });
                if let Some(rule) = named.next() {
                    return named.next().is_none().then_some(rule);
                }
                // ...else, when every FROM item is a table without an entry, whichever of them
                // has the column is sharded by it (the rules for the column must agree).
                if self.bindings.is_empty()
                    || !self
                        .bindings
                        .iter()
                        .all(|binding| matches!(binding.kind, BindingKind::Other(_)))
                {
                    return None;
                }
                let mut rules = self
                    .bindings
                    .iter()
                    .filter_map(|binding| rule_of(binding, column));
                let first = rules.next()?;
                rules.all(|rule| rule == first).then_some(first)
            }
            [relation, column] => {
                let mut matching = self
                    .bindings
                    .iter()
                    .filter(|binding| binding.refname == *relation);
                let binding = matching.next()?;
                if matching.next().is_some() {
                    return None;
                }
                rule_of(binding, column)
            }
            [.., schema, relation, column] => {
                let binding = self.bindings.iter().find(|binding| {
                    binding
                        .qualified
                        .as_ref()
                        .is_some_and(|(s, r)| s.as_deref() == Some(*schema) && r == relation)
                })?;
                rule_of(binding, column)
            }
            [] => None,
        }
    }

    /// The conditions of `where_clause` and of inner joins in scope on sharding keys.
    pub(super) fn filter(&self, where_clause: Option<&Node>) -> KeyFilter {
        let mut filters: Vec<KeyFilter> = self
            .join_quals
            .iter()
            .map(|qual| self.condition(qual))
            .collect();
        filters.extend(self.subqueries.iter().cloned());
        if let Some(clause) = where_clause {
            filters.push(self.condition(clause));
        }
        KeyFilter::and(filters)
    }

    fn condition(&self, node: &Node) -> KeyFilter {
        match node.node.as_ref() {
            Some(NodeEnum::BoolExpr(expr)) => {
                let parts = || expr.args.iter().map(|arg| self.condition(arg)).collect();
                match BoolExprType::try_from(expr.boolop) {
                    Ok(BoolExprType::AndExpr) => KeyFilter::and(parts()),
                    Ok(BoolExprType::OrExpr) => KeyFilter::or(parts()),
                    _ => KeyFilter::Unknown,
                }
            }
            Some(NodeEnum::AExpr(expr)) => self.comparison(expr).unwrap_or(KeyFilter::Unknown),
            _ => KeyFilter::Unknown,
        }
    }

    /// `key = v`, `v = key`, `key IN (...)`, `key = ANY(...)`.
    fn comparison(&self, expr: &protobuf::AExpr) -> Option<KeyFilter> {
        if operator(&expr.name)? != "=" {
            return None;
        }
        let left = expr.lexpr.as_deref()?;
        let right = expr.rexpr.as_deref()?;
        let kind = protobuf::AExprKind::try_from(expr.kind).ok()?;
        let (rule, values) = match kind {
            protobuf::AExprKind::AexprOp => match (self.column_rule(left), self.column_rule(right))
            {
                (Some(rule), _) if key_expr(right).is_some() => (rule, vec![key_expr(right)?]),
                (_, Some(rule)) => (rule, vec![key_expr(left)?]),
                _ => return None,
            },
            protobuf::AExprKind::AexprIn => {
                let rule = self.column_rule(left)?;
                let Some(NodeEnum::List(list)) = right.node.as_ref() else {
                    return None;
                };
                let values: Option<Vec<KeyExpr>> = list.items.iter().map(key_expr).collect();
                (rule, values?)
            }
            protobuf::AExprKind::AexprOpAny => (self.column_rule(left)?, array_values(right)?),
            _ => return None,
        };
        Some(KeyFilter::Key {
            rule: rule.clone(),
            values,
        })
    }

    /// The rule whose key column `node` is (a plain column reference, no cast).
    fn column_rule(&self, node: &Node) -> Option<&TableRule> {
        let Some(NodeEnum::ColumnRef(column)) = node.node.as_ref() else {
            return None;
        };
        let fields = names(&column.fields);
        if fields.iter().any(|field| field.is_empty() || *field == "*") {
            return None;
        }
        self.key_rule(&fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_texts() {
        let some = |items: &[&str]| -> Option<Vec<Option<String>>> {
            Some(items.iter().map(|s| Some(s.to_string())).collect())
        };
        assert_eq!(parse_array_text("{1,2,3}"), some(&["1", "2", "3"]));
        assert_eq!(parse_array_text(" { 1 , 2 } "), some(&["1", "2"]));
        assert_eq!(parse_array_text("{}"), Some(vec![]));
        assert_eq!(
            parse_array_text("{{1,2},{3,4}}"),
            some(&["1", "2", "3", "4"])
        );
        assert_eq!(
            parse_array_text(r#"{"a b","c\"d",e\,f}"#),
            some(&["a b", "c\"d", "e,f"])
        );
        assert_eq!(
            parse_array_text("{1,NULL,\"NULL\"}"),
            Some(vec![Some("1".into()), None, Some("NULL".into())])
        );
        for bad in [
            "",
            "1,2",
            "{1,2",
            "{1,,2}",
            "[1:2]={1,2}",
            "{1}x",
            "{\"a}",
            "{a\"b}",
        ] {
            assert_eq!(parse_array_text(bad), None, "{bad}");
        }
    }

    fn binary_array(oid: u32, dims: &[i32], elements: &[Option<&[u8]>]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend((dims.len() as i32).to_be_bytes());
        out.extend(0i32.to_be_bytes());
        out.extend(oid.to_be_bytes());
        for dim in dims {
            out.extend(dim.to_be_bytes());
            out.extend(1i32.to_be_bytes());
        }
        for element in elements {
            match element {
                None => out.extend((-1i32).to_be_bytes()),
                Some(bytes) => {
                    out.extend((bytes.len() as i32).to_be_bytes());
                    out.extend(*bytes);
                }
            }
        }
        out
    }

    #[test]
    fn array_binaries() {
        let one = 1i64.to_be_bytes();
        let two = 2i64.to_be_bytes();
        let bytes = binary_array(20, &[3], &[Some(&one), None, Some(&two)]);
        let (oid, elements) = parse_array_binary(&bytes).unwrap();
        assert_eq!(oid, 20);
        assert_eq!(elements, vec![Some(&one[..]), None, Some(&two[..])]);
        let empty = binary_array(23, &[], &[]);
        assert_eq!(parse_array_binary(&empty).unwrap().1.len(), 0);
        let square = binary_array(20, &[2, 2], &[Some(&one[..]); 4]);
        assert_eq!(parse_array_binary(&square).unwrap().1.len(), 4);
        assert!(parse_array_binary(&bytes[..bytes.len() - 1]).is_none());
        assert!(parse_array_binary(&[0, 0]).is_none());
        let mut long = bytes.clone();
        long.push(0);
        assert!(parse_array_binary(&long).is_none());
    }

    #[test]
    fn targets_combine() {
        let a = Target::Some(BTreeSet::from([1, 2]));
        let b = Target::Some(BTreeSet::from([2, 3]));
        assert_eq!(a.clone().intersect(b.clone()), Target::one(2));
        assert_eq!(a.clone().union(b), Target::Some(BTreeSet::from([1, 2, 3])));
        assert_eq!(a.clone().intersect(Target::All), a);
        assert_eq!(a.union(Target::All), Target::All);
        assert_eq!(Target::none().shards(4), Shards::Any);
        assert_eq!(Target::one(3).shards(4), Shards::One(3));
        assert_eq!(Target::All.shards(1), Shards::One(0));
    }
}
