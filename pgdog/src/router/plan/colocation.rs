//! Joins across shards: a query that joins two sharded sources and runs on several shards is
//! right only if every pair of joined rows lives on the same shard, i.e. the sources are joined
//! on their sharding keys (`a.id = b.id`, `JOIN b USING (id)`). Anything else (a join on
//! another column, a cross join, a key pgdog cannot see) would silently miss the pairs that
//! span shards, so it is refused for cross-shard execution.

use pg_query::protobuf::{AExprKind, BoolExprType, Node, SelectStmt};
use pg_query::NodeEnum;

use super::schema::TableClass;
use super::survey::{Ctes, Survey};
use super::tree::names;

/// One sharded source in a FROM clause.
struct Leaf {
    /// The name it is referred to by (alias or table name).
    refname: String,
    /// Its sharding key column, when known.
    key: Option<String>,
}

/// The sharded sources of a FROM clause and the equalities that may join them.
#[derive(Default)]
struct Sources<'a> {
    leaves: Vec<Leaf>,
    /// `(left leaves, right leaves, column)` of each `JOIN ... USING (column)`.
    using: Vec<(Vec<usize>, Vec<usize>, String)>,
    /// Join conditions.
    quals: Vec<&'a Node>,
}

impl Survey<'_> {
    /// Why running `select` on several shards would join rows wrongly, if it would.
    pub(super) fn colocation_problem(
        &mut self,
        select: &SelectStmt,
        ctes: &Ctes,
    ) -> Option<String> {
        let mut sources = Sources::default();
        for item in &select.from_clause {
            self.collect(item, ctes, &mut sources);
        }
        if sources.leaves.len() < 2 {
            return None;
        }
        if let Some(leaf) = sources.leaves.iter().find(|l| l.key.is_none()) {
            return Some(format!(
                "a join of \"{}\" with sharded tables cannot run across shards: pgdog cannot tell \
                 that its rows live on the same shard as the rows they join",
                leaf.refname
            ));
        }
        let mut groups: Vec<usize> = (0..sources.leaves.len()).collect();
        let mut conditions: Vec<&Node> = sources.quals.clone();
        if let Some(node) = select.where_clause.as_deref() {
            conditions.push(node);
        }
        let mut equalities = Vec::new();
        for node in conditions {
            conjuncts(node, &mut equalities);
        }
        for (left, right) in equalities {
            let (Some(a), Some(b)) = (
                key_leaf(&sources.leaves, left),
                key_leaf(&sources.leaves, right),
            ) else {
                continue;
            };
            join(&mut groups, a, b);
        }
        for (lefts, rights, column) in &sources.using {
            for &a in lefts {
                for &b in rights {
                    let on_key = |i: usize| sources.leaves[i].key.as_deref() == Some(column);
                    if on_key(a) && on_key(b) {
                        join(&mut groups, a, b);
                    }
                }
            }
        }
        let root = find(&mut groups, 0);
        let apart = (1..sources.leaves.len()).find(|&i| find(&mut groups, i) != root)?;
        let (a, b) = (&sources.leaves[0], &sources.leaves[apart]);
        Some(format!(
            "a join of sharded tables \"{}\" and \"{}\" runs across shards only when they are \
             joined on their sharding keys ({}.{} = {}.{})",
            a.refname,
            b.refname,
            a.refname,
            a.key.as_deref().unwrap_or("?"),
            b.refname,
            b.key.as_deref().unwrap_or("?"),
        ))
    }

    /// Adds the sharded sources of one FROM item; returns their indexes.
    fn collect<'a>(
        &mut self,
        item: &'a Node,
        ctes: &Ctes,
        sources: &mut Sources<'a>,
    ) -> Vec<usize> {
        match item.node.as_ref() {
            Some(NodeEnum::RangeVar(table)) => {
                let refname = table
                    .alias
                    .as_ref()
                    .map(|a| a.aliasname.clone())
                    .unwrap_or_else(|| table.relname.clone());
                let cte = table.schemaname.is_empty()
                    && ctes.iter().any(|(name, _)| *name == table.relname);
                if cte {
                    return match self.table(table, ctes) {
                        Some(true) => push(sources, refname, None),
                        _ => Vec::new(),
                    };
                }
                let schema = (!table.schemaname.is_empty()).then_some(table.schemaname.as_str());
                let class = self
                    .rules()
                    .map(|rules| rules.classify(schema, &table.relname));
                match class {
                    Some(TableClass::Sharded(rule)) => {
                        push(sources, refname, Some(rule.column().to_string()))
                    }
                    Some(TableClass::Other(rules)) => {
                        let key = match rules.as_slice() {
                            [rule] => Some(rule.column().to_string()),
                            _ => None,
                        };
                        push(sources, refname, key)
                    }
                    Some(TableClass::Omnisharded | TableClass::Catalog) | None => Vec::new(),
                }
            }
            Some(NodeEnum::JoinExpr(join)) => {
                let left = join
                    .larg
                    .as_deref()
                    .map(|n| self.collect(n, ctes, sources))
                    .unwrap_or_default();
                let right = join
                    .rarg
                    .as_deref()
                    .map(|n| self.collect(n, ctes, sources))
                    .unwrap_or_default();
                if let Some(quals) = join.quals.as_deref() {
                    sources.quals.push(quals);
                }
                for column in names(&join.using_clause) {
                    sources
                        .using
                        .push((left.clone(), right.clone(), column.to_string()));
                }
                left.into_iter().chain(right).collect()
            }
            Some(NodeEnum::RangeSubselect(sub)) => {
                let refname = sub
                    .alias
                    .as_ref()
                    .map(|a| a.aliasname.clone())
                    .unwrap_or_else(|| "subquery".to_string());
                let partitioned = match sub.subquery.as_deref().and_then(|q| q.node.as_ref()) {
                    Some(NodeEnum::SelectStmt(select)) => {
                        let mut inner = Survey::new_like(self);
                        inner.select(select, ctes, super::survey::Level::Nested)
                    }
                    _ => false,
                };
                if partitioned {
                    push(sources, refname, None)
                } else {
                    Vec::new()
                }
            }
            _ => Vec::new(),
        }
    }
}

fn push(sources: &mut Sources<'_>, refname: String, key: Option<String>) -> Vec<usize> {
    sources.leaves.push(Leaf { refname, key });
    vec![sources.leaves.len() - 1]
}

/// The column-to-column equalities among the AND-ed conditions of `node`.
fn conjuncts<'a>(node: &'a Node, out: &mut Vec<(&'a [Node], &'a [Node])>) {
    match node.node.as_ref() {
        Some(NodeEnum::BoolExpr(expr)) if expr.boolop == BoolExprType::AndExpr as i32 => {
            for arg in &expr.args {
                conjuncts(arg, out);
            }
        }
        Some(NodeEnum::AExpr(expr))
            if expr.kind == AExprKind::AexprOp as i32 && names(&expr.name) == ["="] =>
        {
            if let (Some(left), Some(right)) = (column_ref(&expr.lexpr), column_ref(&expr.rexpr)) {
                out.push((left, right));
            }
        }
        _ => {}
    }
}

fn column_ref(node: &Option<Box<Node>>) -> Option<&[Node]> {
    match node.as_deref().and_then(|n| n.node.as_ref()) {
        Some(NodeEnum::ColumnRef(column)) => Some(&column.fields),
        Some(NodeEnum::TypeCast(cast)) => column_ref(&cast.arg),
        _ => None,
    }
}

/// The leaf whose sharding key `fields` names (`t.key`, or `key` when exactly one leaf has
/// it as its key).
fn key_leaf(leaves: &[Leaf], fields: &[Node]) -> Option<usize> {
    match names(fields)[..] {
        [table, column] | [_, table, column] => leaves
            .iter()
            .position(|l| l.refname == table && l.key.as_deref() == Some(column)),
        [column] => {
            let mut found = leaves
                .iter()
                .enumerate()
                .filter(|(_, l)| l.key.as_deref() == Some(column));
            match (found.next(), found.next()) {
                (Some((i, _)), None) => Some(i),
                _ => None,
            }
        }
        _ => None,
    }
}

fn find(groups: &mut [usize], i: usize) -> usize {
    let mut root = i;
    while groups[root] != root {
        root = groups[root];
    }
    groups[i] = root;
    root
}

fn join(groups: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(groups, a), find(groups, b));
    groups[ra] = rb;
}
