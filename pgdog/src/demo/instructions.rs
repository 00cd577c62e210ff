//! What the demo tells the user: how to psql into the app database and the admin database,
//! what to try, where the servers and files are; before the move and after the cutover.

use std::path::Path;

use super::clusters::{CUSTOMERS, ORDERS};
use super::config::{reshard_command, APP_DATABASE, APP_PASSWORD, APP_USER, SHARDED_DATABASE};
use super::summary::grouped;
use crate::reshard::cutover::retired_name;

/// Where everything is.
#[derive(Debug, Clone)]
pub struct Places<'a> {
    /// pgdog's port.
    pub port: u16,
    /// The admin database's password.
    pub admin_password: &'a str,
    /// The source PostgreSQL's port.
    pub source_port: u16,
    /// The shards' PostgreSQL ports.
    pub shard_ports: &'a [u16],
    /// The directory of the config files.
    pub dir: &'a Path,
    /// Client connections of the workload.
    pub clients: usize,
    /// Its transactions per second.
    pub rate: f64,
}

impl Places<'_> {
    fn app_url(&self, database: &str) -> String {
        format!(
            "postgres://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    fn admin_url(&self) -> String {
        format!(
            "postgres://admin:{}@127.0.0.1:{}/admin",
            self.admin_password, self.port
        )
    }

    fn servers(&self) -> String {
        let shards: Vec<String> = self
            .shard_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!(
            "source 127.0.0.1:{}, shards {} (user postgres, password postgres)",
            self.source_port,
            shards.join(" and ")
        )
    }
}

/// Before the move: the source with its data, the empty shards, the workload; with
/// `resharding` the move starts now, else how to start it.
pub fn before(places: &Places<'_>, resharding: bool) -> String {
    let mut text = format!(
        "\npgdog demo is running: database \"{APP_DATABASE}\" ({} customers, {} orders) on one PostgreSQL,\n\
         {} empty shards behind \"{SHARDED_DATABASE}\", and {} clients writing about {:.0} transactions/s through pgdog.\n\
         \n  Connect through pgdog:    psql \"{}\"\
         \n  Then try:                 SELECT count(*) FROM orders;\
         \n  The empty shards:         psql \"{}\"\
         \n  The admin database:       psql \"{}\"\
         \n  Then try:                 SHOW TASKS; SHOW TABLE_COPIES; SHOW REPLICATION; SHOW CUTOVER;\
         \n  The Postgres behind it:   {}\
         \n  Config files:             {}\n\n",
        grouped(CUSTOMERS as u64),
        grouped(ORDERS as u64),
        places.shard_ports.len(),
        places.clients,
        places.rate,
        places.app_url(APP_DATABASE),
        places.app_url(SHARDED_DATABASE),
        places.admin_url(),
        places.servers(),
        places.dir.display(),
    );
    if resharding {
        text.push_str(&format!(
            "Moving \"{APP_DATABASE}\" onto the shards now, while the clients write: {}\n\n",
            reshard_command()
        ));
    } else {
        text.push_str(&format!(
            "To move it onto the shards while the clients write, type {} in the admin database,\n\
             then watch SHOW TASKS. (pgdog demo --reshard does it for you.)\n\
             Press Ctrl-C to stop; the clusters and their files are removed.\n",
            reshard_command()
        ));
    }
    text
}

/// After the cutover: the app database reaches the shards; the old one keeps its name with a
/// suffix.
pub fn after(places: &Places<'_>) -> String {
    format!(
        "\nThe app database now reaches the shards; the clients are still writing, now to the shards.\n\
         \n  Connect through pgdog:    psql \"{}\"\
         \n  Then try:                 SELECT count(*) FROM orders;  -- pgdog asks both shards and adds up\
         \n  The old database:         psql \"{}\"\
         \n  The admin database:       psql \"{}\"\
         \n  Then try:                 SHOW CUTOVER; SHOW TASKS; SHOW POOLS;\
         \n  The Postgres behind it:   {}\
         \n  Config files:             {}\n\
         \nPress Ctrl-C to stop; the clusters and their files are removed.\n",
        places.app_url(APP_DATABASE),
        places.app_url(&retired_name(APP_DATABASE)),
        places.admin_url(),
        places.servers(),
        places.dir.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn places() -> Places<'static> {
        Places {
            port: 6432,
            admin_password: "s3cret",
            source_port: 5432,
            shard_ports: &[5433, 5434],
            dir: Path::new("/tmp/pgdog-pg-1"),
            clients: 4,
            rate: 50.0,
        }
    }

    #[test]
    fn urls_and_next_steps() {
        let text = before(&places(), false);
        for expected in [
            "  Connect through pgdog:    psql \"postgres://demo:demo@127.0.0.1:6432/demo\"",
            "  The admin database:       psql \"postgres://admin:s3cret@127.0.0.1:6432/admin\"",
            "  The empty shards:         psql \"postgres://demo:demo@127.0.0.1:6432/demo_sharded\"",
            "source 127.0.0.1:5432, shards 127.0.0.1:5433 and 127.0.0.1:5434",
            "  Config files:             /tmp/pgdog-pg-1",
            "type RESHARD demo demo_sharded pgdog_demo in the admin database",
            "20,000 customers, 300,000 orders",
        ] {
            assert!(text.contains(expected), "{expected:?} in\n{text}");
        }
        assert!(before(&places(), true).contains("now, while the clients write: RESHARD demo"));
        let text = after(&places());
        assert!(text.contains("psql \"postgres://demo:demo@127.0.0.1:6432/demo_before_cutover\""));
        assert!(text.contains("Press Ctrl-C to stop"));
    }
}
