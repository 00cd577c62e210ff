//! Result tables: what a `SHOW` returns, as typed columns and text rows. The pooler turns one into
//! RowDescription, DataRows and CommandComplete; one type serves every SHOW.

/// A column's Postgres type, for RowDescription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// `text`
    Text,
    /// `int8`
    BigInt,
    /// `numeric`
    Numeric,
    /// `bool`
    Bool,
    /// `float8`
    Double,
}

impl ColumnType {
    /// The type's OID.
    pub fn oid(self) -> u32 {
        match self {
            ColumnType::Text => 25,
            ColumnType::BigInt => 20,
            ColumnType::Numeric => 1700,
            ColumnType::Bool => 16,
            ColumnType::Double => 701,
        }
    }
}

/// A named, typed column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Column name as shown to psql.
    pub name: String,
    /// Its type.
    pub kind: ColumnType,
}

/// Columns and rows of text values (`None` is SQL NULL).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultTable {
    /// The columns.
    pub columns: Vec<Column>,
    /// The rows, one value per column.
    pub rows: Vec<Vec<Option<String>>>,
}

impl ResultTable {
    /// A table with these columns and no rows.
    pub fn new(columns: &[(&str, ColumnType)]) -> Self {
        ResultTable {
            columns: columns
                .iter()
                .map(|(name, kind)| Column {
                    name: name.to_string(),
                    kind: *kind,
                })
                .collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; it must have one value per column.
    pub fn push(&mut self, row: Vec<Option<String>>) -> Result<(), String> {
        if row.len() != self.columns.len() {
            return Err(format!(
                "row has {} values for {} columns",
                row.len(),
                self.columns.len()
            ));
        }
        self.rows.push(row);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_must_match_columns() {
        let mut t = ResultTable::new(&[
            ("database", ColumnType::Text),
            ("cl_active", ColumnType::BigInt),
        ]);
        assert!(t.push(vec![Some("app".into()), Some("3".into())]).is_ok());
        assert!(t.push(vec![None]).is_err());
        assert_eq!(t.columns[1].kind.oid(), 20);
    }
}
