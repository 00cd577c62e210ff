//! `pgdog verify`: compare every table (or one) of two configured databases, as row counts
//! and checksums shard by shard, print the result table, and fail unless every table matches.

use std::io::Write;

use clap::Args;
use pgdog_admin::ResultTable;
use pgdog_config::ConfigAndUsers;

use super::CliError;
use crate::reshard::verify::{self, VerifyOptions};

/// Arguments of `pgdog verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// The source and the destination.
    #[command(flatten)]
    pub databases: super::databases::MoveDatabases,
    /// Only this table (`name` or `schema.name`; a partitioned table stands for its
    /// partitions).
    #[arg(long)]
    pub table: Option<String>,
}

/// Runs the comparison and writes the table to `out`; an error unless every table matches.
pub fn run(
    config: &ConfigAndUsers,
    args: &VerifyArgs,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let mut options =
        VerifyOptions::new(&args.databases.from_database, &args.databases.to_database);
    options.from_user = args.databases.from_user.clone();
    options.to_user = args.databases.to_user.clone();
    options.table = args.table.clone();
    let runtime = super::current_thread()?;
    let report = runtime
        .block_on(verify::run(config, &options, None))
        .map_err(|e| CliError::Resharding(e.to_string()))?;
    out.write_all(render(&crate::admin::verify::table(&report)).as_bytes())?;
    if report.all_match() {
        writeln!(out, "{}", report.summary())?;
        Ok(())
    } else {
        Err(CliError::Resharding(format!(
            "{} and {} differ: {}",
            args.databases.from_database,
            args.databases.to_database,
            report.summary()
        )))
    }
}

/// The table as aligned text, like psql prints it (NULL as empty).
pub fn render(table: &ResultTable) -> String {
    let cell = |value: &Option<String>| value.clone().unwrap_or_default();
    let mut widths: Vec<usize> = table
        .columns
        .iter()
        .map(|c| c.name.chars().count())
        .collect();
    for row in &table.rows {
        for (width, value) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell(value).chars().count());
        }
    }
    let line = |values: Vec<String>| -> String {
        let padded: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(value, width)| {
                let pad = width.saturating_sub(value.chars().count());
                format!("{value}{}", " ".repeat(pad))
            })
            .collect();
        format!(" {}\n", padded.join(" | ").trim_end())
    };
    let mut text = line(table.columns.iter().map(|c| c.name.clone()).collect());
    let rules: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
    text.push_str(&rules.join("+"));
    text.push('\n');
    for row in &table.rows {
        text.push_str(&line(row.iter().map(cell).collect()));
    }
    text.push_str(&format!(
        "({} row{})\n",
        table.rows.len(),
        if table.rows.len() == 1 { "" } else { "s" }
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgdog_admin::ColumnType;

    #[test]
    fn renders_aligned() {
        let mut table =
            ResultTable::new(&[("a", ColumnType::Text), ("long_name", ColumnType::BigInt)]);
        table.push(vec![Some("xyz".into()), None]).unwrap();
        table
            .push(vec![Some("é".into()), Some("7".into())])
            .unwrap();
        assert_eq!(
            render(&table),
            " a   | long_name\n-----+-----------\n xyz |\n é   | 7\n(2 rows)\n"
        );
    }
}
