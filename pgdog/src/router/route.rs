//! What the sharding router decides for one statement, and how the answers of several shards
//! become one: the types the planner (`plan`) produces, the executor (`frontend::sharded`)
//! follows and the merger (`merge`) applies.

/// The shards a statement runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shards {
    /// Exactly this shard.
    One(usize),
    /// These shards (sorted, no duplicates, at least two).
    Many(Vec<usize>),
    /// Every shard.
    All,
    /// Any single shard gives the right answer (omnisharded tables, statements that read no
    /// sharded table such as `SELECT 1`): the executor picks one.
    Any,
}

impl Shards {
    /// The shard numbers out of `count` this stands for (`Any` is shard 0 here; the executor
    /// chooses its own).
    pub fn list(&self, count: usize) -> Vec<usize> {
        match self {
            Shards::One(shard) => vec![*shard],
            Shards::Many(shards) => shards.clone(),
            Shards::All => (0..count).collect(),
            Shards::Any => vec![0],
        }
    }

    /// `shards` as the narrowest variant: one shard, several or all of `count`.
    pub fn from_list(mut shards: Vec<usize>, count: usize) -> Shards {
        shards.sort_unstable();
        shards.dedup();
        match shards.len() {
            1 => Shards::One(shards[0]),
            n if n >= count => Shards::All,
            _ => Shards::Many(shards),
        }
    }
}

/// How rows from several shards are combined into the one answer the client gets. Column
/// numbers are positions in the result as the shards return it (0-based). Empty (the default)
/// means: concatenate the shards' rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeSpec {
    /// `ORDER BY`: rows of each shard arrive sorted by these keys; the merge keeps that order.
    pub order_by: Vec<SortKey>,
    /// `LIMIT` (after `OFFSET`), applied to the merged rows.
    pub limit: Option<u64>,
    /// `OFFSET`, applied to the merged rows (shards were asked for `LIMIT + OFFSET` rows from 0).
    pub offset: u64,
    /// Columns holding aggregates, combined across shards; with `group_by`, per group.
    pub aggregates: Vec<Aggregate>,
    /// Columns that form the `GROUP BY` key. With no aggregates, rows with equal keys are
    /// collapsed into one (like `DISTINCT` on those columns).
    pub group_by: Vec<usize>,
    /// `SELECT DISTINCT`: drop rows equal in every visible column.
    pub distinct: bool,
    /// Trailing columns a rewrite added for the merge (e.g. the `count` behind an `avg`): they
    /// are removed from RowDescription and every row the client gets.
    pub hidden_columns: usize,
    /// `ORDER BY` keys known only by column name (`SELECT * ... ORDER BY id`): for each, the
    /// index in `order_by` whose `column` is found by this name in the RowDescription.
    pub order_by_names: Vec<(usize, String)>,
}

impl MergeSpec {
    /// Whether rows can simply be concatenated.
    pub fn is_concat(&self) -> bool {
        *self == MergeSpec::default()
    }
}

/// One `ORDER BY` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    /// Result column.
    pub column: usize,
    /// `DESC`.
    pub descending: bool,
    /// `NULLS FIRST` (PostgreSQL's default is NULLS LAST for ASC, NULLS FIRST for DESC; the
    /// planner resolves the default).
    pub nulls_first: bool,
}

/// An aggregate in a result column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aggregate {
    /// Result column.
    pub column: usize,
    /// How the shards' values combine.
    pub function: AggregateFunction,
}

/// How per-shard values of an aggregate combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateFunction {
    /// `count(...)`: sum of the counts (bigint).
    Count,
    /// `sum(...)`: sum, NULL when every shard's is NULL.
    Sum,
    /// `min(...)`: smallest non-NULL value.
    Min,
    /// `max(...)`: largest non-NULL value.
    Max,
    /// `avg(x)`, rewritten to `sum(x)` in this column plus a hidden `count(x)` in
    /// `count_column`: the merged value is sum / count, typed like PostgreSQL's `avg`
    /// (numeric for integer and numeric input, double precision for floating point).
    Avg {
        /// The hidden column with `count(x)`.
        count_column: usize,
    },
    /// `bool_and(...)` / `every(...)`.
    BoolAnd,
    /// `bool_or(...)`.
    BoolOr,
}

/// The data format of a `COPY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CopyFormat {
    /// `FORMAT text` (the default): tab-separated, `\N` for NULL, backslash escapes.
    #[default]
    Text,
    /// `FORMAT csv`.
    Csv,
    /// `FORMAT binary`.
    Binary,
}

/// The options of a `COPY` statement that decide how its data stream is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOptions {
    /// Data format.
    pub format: CopyFormat,
    /// Column separator (`DELIMITER`; tab for text, comma for CSV).
    pub delimiter: u8,
    /// The NULL marker (`NULL`; `\N` for text, empty unquoted for CSV).
    pub null: String,
    /// `HEADER`: the first line is column names, not data (text and CSV).
    pub header: bool,
    /// CSV `QUOTE` character.
    pub quote: u8,
    /// CSV `ESCAPE` character (defaults to the quote).
    pub escape: u8,
}

impl CopyOptions {
    /// PostgreSQL's defaults for `format`.
    pub fn defaults(format: CopyFormat) -> CopyOptions {
        let csv = format == CopyFormat::Csv;
        CopyOptions {
            format,
            delimiter: if csv { b',' } else { b'\t' },
            null: if csv { String::new() } else { "\\N".into() },
            header: false,
            quote: b'"',
            escape: b'"',
        }
    }
}

/// The parameters of one Bind, as the planner reads them for sharding keys.
#[derive(Debug, Clone, Copy)]
pub struct Params<'a> {
    /// Each parameter's bytes; `None` is NULL.
    pub values: &'a [Option<&'a [u8]>],
    /// Format codes as Bind sent them: empty (all text), one (for all) or one per parameter;
    /// 0 is text, 1 is binary.
    pub formats: &'a [i16],
    /// Parameter type OIDs from Parse (may be shorter than `values`; 0 is unspecified).
    pub types: &'a [u32],
}

impl<'a> Params<'a> {
    /// No parameters (a simple query).
    pub const NONE: Params<'static> = Params {
        values: &[],
        formats: &[],
        types: &[],
    };

    /// Parameter `index` (0-based): its bytes (None for NULL), whether it is binary, and its
    /// type OID (0 when unspecified). `None` when there is no such parameter.
    pub fn get(&self, index: usize) -> Option<(Option<&'a [u8]>, bool, u32)> {
        let value = *self.values.get(index)?;
        let binary = match self.formats.len() {
            0 => false,
            1 => self.formats[0] == 1,
            _ => self.formats.get(index).copied() == Some(1),
        };
        let oid = self.types.get(index).copied().unwrap_or(0);
        Some((value, binary, oid))
    }
}
