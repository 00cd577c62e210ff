//! The flags naming a move's two databases, shared by the resharding subcommands.

use clap::Args;

/// `--from-database`, `--from-user`, `--to-database`, `--to-user`.
#[derive(Debug, Clone, Args)]
pub struct MoveDatabases {
    /// The source database (its name in pgdog.toml).
    #[arg(long)]
    pub from_database: String,
    /// The users.toml user for the source (default: its schema_admin user).
    #[arg(long)]
    pub from_user: Option<String>,
    /// The destination database (its name in pgdog.toml; sharded for a move).
    #[arg(long)]
    pub to_database: String,
    /// The users.toml user for the destination (default: its schema_admin user).
    #[arg(long)]
    pub to_user: Option<String>,
}
