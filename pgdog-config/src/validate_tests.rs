//! One test per validation rule; each checks the whole message, which names
//! the file, the key and the fix.

use crate::{Config, ConfigAndUsers, Users};

const DB: &str = "[[databases]]\nname = \"shop\"\n";
const USER: &str = "[[users]]\nname = \"alice\"\ndatabase = \"shop\"\npassword = \"pw\"\n";
const SCRAM: &str = "SCRAM-SHA-256$4096:cGdkb2ctZXhhbXBsZS1zYWx0$\
    0hZGKo/AMUm0vdE3gA05+E8LIyJljDcBENKXjhvi3I0=:bk5wZ2l2MGn2TRsZpfEFl3J+68+nZnICJ5nelgvhyuY=";
const MD5: &str = "md5f4eebe911f99fc6bb9d624b6956b3e4b";

/// All problems, as printed.
fn problems(config: &str, users: &str) -> Vec<String> {
    let all = ConfigAndUsers {
        config: Config::from_str(config, "pgdog.toml").unwrap_or_else(|e| panic!("{e}")),
        users: Users::from_str(users, "users.toml").unwrap_or_else(|e| panic!("{e}")),
        ..ConfigAndUsers::default()
    };
    all.problems().iter().map(ToString::to_string).collect()
}

/// The single problem, as printed.
fn only(config: &str, users: &str) -> String {
    let found = problems(config, users);
    assert_eq!(found.len(), 1, "{found:#?}");
    found.into_iter().next().unwrap()
}

fn user_with(extra: &str) -> String {
    format!("[[users]]\nname = \"alice\"\ndatabase = \"shop\"\n{extra}\n")
}

#[test]
fn baseline_is_valid() {
    assert_eq!(problems(DB, USER), Vec::<String>::new());
    assert!(ConfigAndUsers::from_strs(DB, USER, "pgdog.toml", "users.toml").is_ok());
}

#[test]
fn general_port_zero() {
    assert_eq!(
        only(&format!("[general]\nport = 0\n{DB}"), USER),
        "pgdog.toml: general.port = 0: pgdog cannot listen on port 0; set a port from 1 to 65535, e.g. 6432"
    );
}

#[test]
fn workers_zero() {
    assert_eq!(
        only(&format!("[general]\nworkers = 0\n{DB}"), USER),
        "pgdog.toml: general.workers = 0: must be at least 1; set it to the number of worker threads, e.g. 2"
    );
}

#[test]
fn default_pool_size_zero() {
    assert_eq!(
        only(&format!("[general]\ndefault_pool_size = 0\n{DB}"), USER),
        "pgdog.toml: general.default_pool_size = 0: must be at least 1; set it to the number of \
         server connections per pool, e.g. 10"
    );
}

#[test]
fn min_pool_size_above_default() {
    assert_eq!(
        only(&format!("[general]\nmin_pool_size = 11\n{DB}"), USER),
        "pgdog.toml: general.min_pool_size = 11: is larger than general.default_pool_size (10); \
         lower it or raise default_pool_size"
    );
}

#[test]
fn tls_needs_both_files() {
    let cert = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    assert_eq!(
        only(&format!("[general]\ntls_certificate = \"{cert}\"\n{DB}"), USER),
        format!(
            "pgdog.toml: general.tls_certificate = \"{cert}\": is set but general.tls_private_key is not; \
             set both to enable TLS, or remove tls_certificate"
        )
    );
    assert_eq!(
        problems(
            &format!("[general]\ntls_certificate = \"{cert}\"\ntls_private_key = \"{cert}\"\n{DB}"),
            USER
        ),
        Vec::<String>::new()
    );
}

#[test]
fn tls_files_must_be_readable() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let found = problems(
        &format!(
            "[general]\ntls_certificate = \"/nonexistent/cert.pem\"\ntls_private_key = \"{dir}\"\n{DB}"
        ),
        USER,
    );
    assert_eq!(
        found,
        vec![
            "pgdog.toml: general.tls_certificate = \"/nonexistent/cert.pem\": cannot read \
             /nonexistent/cert.pem: No such file or directory (os error 2); fix the path (relative \
             paths start from the directory pgdog runs in) or remove the setting"
                .to_string(),
            format!(
                "pgdog.toml: general.tls_private_key = \"{dir}\": cannot read {dir}: it is not a \
                 regular file; fix the path (relative paths start from the directory pgdog runs in) \
                 or remove the setting"
            ),
        ]
    );
}

#[test]
fn database_fields_must_be_set() {
    let found = problems(
        "[[databases]]\nname = \"\"\nhost = \"\"\nport = 0\ndatabase_name = \"\"\npool_size = 0\n",
        "",
    );
    assert_eq!(
        found,
        [
            "pgdog.toml: databases[0].name = \"\": is empty; set it to the name clients connect to",
            "pgdog.toml: databases[0].host = \"\": is empty; set it to the Postgres server's host name or IP, e.g. \"127.0.0.1\"",
            "pgdog.toml: databases[0].port = 0: is not a valid Postgres port; set it to the server's port, e.g. 5432",
            "pgdog.toml: databases[0].database_name = \"\": is empty; set it to the database name on the \
             Postgres server, or remove it to use name",
            "pgdog.toml: databases[0].pool_size = 0: must be at least 1; raise it, or remove it to use general.default_pool_size",
        ]
    );
}

#[test]
fn database_pool_size_below_min() {
    assert_eq!(
        only(
            &format!("[general]\nmin_pool_size = 3\n{DB}pool_size = 2\n"),
            USER
        ),
        "pgdog.toml: databases[0].pool_size = 2: is smaller than general.min_pool_size (3); \
         raise it or lower min_pool_size"
    );
}

#[test]
fn two_primaries_for_one_shard() {
    let config = format!("{DB}{DB}[[databases]]\nname = \"shop\"\nrole = \"replica\"\n");
    assert_eq!(
        only(&config, USER),
        "pgdog.toml: databases[1].role = \"primary\": second primary for database \"shop\" shard 0 \
         (the first is databases[0]); set role = \"replica\" on one of them or fix its shard"
    );
}

#[test]
fn shard_gap() {
    let config = format!("{DB}[[databases]]\nname = \"shop\"\nshard = 3\n");
    assert_eq!(
        problems(&config, USER),
        [1, 2].map(|missing| format!(
            "pgdog.toml: databases[1].shard = 3: database \"shop\" has no shard {missing}; shards must \
             be numbered 0 to N-1 without gaps; add a [[databases]] entry with name = \"shop\" and \
             shard = {missing}, or renumber the shards"
        ))
    );
}

#[test]
fn user_name_and_database_must_be_set() {
    assert_eq!(
        problems(DB, "[[users]]\nname = \"\"\npassword = \"pw\"\n"),
        [
            "users.toml: users[0].name = \"\": is empty; set it to the user name clients log in with",
            "users.toml: users[0].database = \"\": is empty; set it to the name of a [[databases]] entry in pgdog.toml",
        ]
    );
}

#[test]
fn user_database_must_exist() {
    let users =
        format!("{USER}{USER}[[users]]\nname = \"bob\"\ndatabase = \"shp\"\npassword = \"pw\"\n");
    let found = problems(DB, &users);
    assert_eq!(
        found[1],
        "users.toml: users[2].database = \"shp\": no [[databases]] entry named \"shp\" in pgdog.toml; \
         add one or fix the name"
    );
}

#[test]
fn duplicate_user() {
    assert_eq!(
        only(DB, &format!("{USER}{USER}")),
        "users.toml: users[1].name = \"alice\": duplicates users[0] (same name and database \"shop\"); \
         remove one of them"
    );
}

#[test]
fn user_pool_size_zero() {
    assert_eq!(
        only(DB, &user_with("password = \"pw\"\npool_size = 0")),
        "users.toml: users[0].pool_size = 0: must be at least 1; raise it, or remove it to use the \
         database's pool size"
    );
}

#[test]
fn user_min_pool_size_above_pool_size() {
    assert_eq!(
        only(
            DB,
            &user_with("password = \"pw\"\npool_size = 2\nmin_pool_size = 3")
        ),
        "users.toml: users[0].min_pool_size = 3: is larger than this user's pool size (2, from \
         users[0].pool_size); lower it or raise the pool size"
    );
    assert_eq!(
        only(
            &format!("{DB}pool_size = 4\n"),
            &user_with("password = \"pw\"\nmin_pool_size = 5")
        ),
        "users.toml: users[0].min_pool_size = 5: is larger than this user's pool size (4, from \
         databases[0].pool_size in pgdog.toml); lower it or raise the pool size"
    );
    assert_eq!(
        only(&format!("[general]\nmin_pool_size = 4\n{DB}"), &user_with("password = \"pw\"\npool_size = 3")),
        "users.toml: users[0].pool_size = 3: is smaller than general.min_pool_size (4) in pgdog.toml; \
         raise it or set min_pool_size for this user"
    );
}

#[test]
fn password_required_unless_trust() {
    assert_eq!(
        only(DB, &user_with("")),
        "users.toml: users[0].password: user \"alice\" has neither password nor password_hash, but \
         general.auth_type = \"scram\" in pgdog.toml needs one; set password, or set password_hash \
         to a SCRAM-SHA-256 secret from pg_authid.rolpassword"
    );
    assert_eq!(
        problems(
            &format!("[general]\nauth_type = \"trust\"\n{DB}"),
            &user_with("")
        ),
        Vec::<String>::new()
    );
}

#[test]
fn malformed_password_hash() {
    assert_eq!(
        only(DB, &user_with("password = \"pw\"\npassword_hash = \"SCRAM-SHA-256$4096:c2FsdA==$abc\"")),
        "users.toml: users[0].password_hash: looks like a SCRAM secret but does not have the shape \
         SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>; it must be \
         SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> or md5 followed by 32 hex digits, \
         as stored in pg_authid.rolpassword; copy it from there or use password instead"
    );
}

#[test]
fn scram_hash_with_md5_auth() {
    assert_eq!(
        only(
            &format!("[general]\nauth_type = \"md5\"\n{DB}password = \"db\"\n"),
            &user_with(&format!("password_hash = \"{SCRAM}\""))
        ),
        "users.toml: users[0].password_hash: is a SCRAM secret, but general.auth_type = \"md5\" in \
         pgdog.toml needs the plaintext password or an md5 hash; replace it with password or an md5 \
         hash, or set auth_type = \"scram\""
    );
}

#[test]
fn md5_hash_with_scram_auth() {
    assert_eq!(
        only(
            DB,
            &user_with(&format!(
                "password_hash = \"{MD5}\"\nserver_password = \"pw\""
            ))
        ),
        "users.toml: users[0].password_hash: is an md5 hash, but general.auth_type = \"scram\" in \
         pgdog.toml needs the plaintext password or a SCRAM secret; replace it with password or a \
         SCRAM secret, or set auth_type = \"md5\""
    );
}

#[test]
fn hash_only_needs_a_server_password() {
    let config =
        format!("{DB}[[databases]]\nname = \"shop\"\nrole = \"replica\"\npassword = \"db\"\n");
    assert_eq!(
        only(&config, &user_with(&format!("password_hash = \"{SCRAM}\""))),
        "users.toml: users[0].server_password: user \"alice\" has only a password_hash, so pgdog has \
         no password to log in to Postgres with for databases[0] in pgdog.toml; set server_password \
         for this user, or password in that [[databases]] entry"
    );
    let fixed = user_with(&format!(
        "password_hash = \"{SCRAM}\"\nserver_password = \"srv\""
    ));
    assert_eq!(problems(&config, &fixed), Vec::<String>::new());
}

#[test]
fn admin_name_must_not_be_a_database() {
    let config = "[[databases]]\nname = \"admin\"\n";
    let users = "[[users]]\nname = \"alice\"\ndatabase = \"admin\"\npassword = \"pw\"\n";
    assert_eq!(
        only(config, users),
        "pgdog.toml: admin.name = \"admin\": is the default admin database name and also the name of \
         a [[databases]] entry; add [admin] with another name to pgdog.toml, or rename the database"
    );
    assert_eq!(
        only(&format!("{config}[admin]\nname = \"admin\"\n"), users),
        "pgdog.toml: admin.name = \"admin\": is also the name of a [[databases]] entry in pgdog.toml; \
         choose another admin name or rename the database"
    );
    assert_eq!(
        only(&format!("{config}[admin]\nname = \"ops\"\n"), &format!("{users}[admin]\nname = \"admin\"\n")),
        "users.toml: admin.name = \"admin\": is also the name of a [[databases]] entry in pgdog.toml; \
         choose another admin name or rename the database"
    );
}

#[test]
fn admin_name_and_user_must_be_set() {
    assert_eq!(
        problems(&format!("{DB}[admin]\nname = \"\"\nuser = \"\"\n"), USER),
        [
            "pgdog.toml: admin.name = \"\": is empty; set it to the name of the admin database, e.g. \"admin\"",
            "pgdog.toml: admin.user = \"\": is empty; set it to the user name for the admin database, e.g. \"admin\"",
        ]
    );
}

#[test]
fn all_problems_are_collected() {
    let err = ConfigAndUsers::from_strs(
        "[general]\nport = 0\nworkers = 0\n[[databases]]\nname = \"shop\"\nshard = 1\n",
        "[[users]]\nname = \"bob\"\ndatabase = \"nope\"\n",
        "/etc/pgdog/pgdog.toml",
        "/etc/pgdog/users.toml",
    )
    .unwrap_err();
    assert_eq!(err.problems().len(), 5, "{err}");
    let text = err.to_string();
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(
        text.lines()
            .take(3)
            .all(|l| l.starts_with("/etc/pgdog/pgdog.toml: ")),
        "{text}"
    );
    assert!(
        text.lines()
            .skip(3)
            .all(|l| l.starts_with("/etc/pgdog/users.toml: ")),
        "{text}"
    );
}

#[test]
fn health_check_and_ban_durations_must_not_be_zero() {
    let config = format!(
        "[general]\nhealthcheck_interval = 0\nidle_healthcheck_interval = 0\n\
         idle_healthcheck_delay = 0\nhealthcheck_timeout = 0\nban_timeout = 0\n{DB}"
    );
    assert_eq!(
        problems(&config, USER),
        [
            "pgdog.toml: general.healthcheck_interval = 0: must be at least 1; set how often, in \
             milliseconds, a server connection is checked before a client gets it, e.g. 30000",
            "pgdog.toml: general.idle_healthcheck_interval = 0: must be at least 1; set how often, in \
             milliseconds, every pool is checked even without traffic, e.g. 30000",
            "pgdog.toml: general.healthcheck_timeout = 0: must be at least 1; set how long, in \
             milliseconds, a health check may take before the server counts as down, e.g. 5000",
            "pgdog.toml: general.ban_timeout = 0: must be at least 1; set how long, in milliseconds, \
             a failed server stays out of rotation, e.g. 300000",
        ]
    );
}

#[test]
fn replica_and_metrics_settings_are_valid() {
    let config = format!(
        "[general]\nload_balancing_strategy = \"least_active_connections\"\n\
         read_write_split = \"exclude_primary\"\nopenmetrics_port = 9090\n\
         openmetrics_namespace = \"pgdog_db_\"\n{DB}"
    );
    assert_eq!(problems(&config, USER), Vec::<String>::new());
}

#[test]
fn openmetrics_port_zero() {
    assert_eq!(
        only(&format!("[general]\nopenmetrics_port = 0\n{DB}"), USER),
        "pgdog.toml: general.openmetrics_port = 0: pgdog cannot serve metrics on port 0; set a port \
         from 1 to 65535, e.g. 9090, or remove openmetrics_port to disable metrics"
    );
}

#[test]
fn openmetrics_port_same_as_port() {
    assert_eq!(
        only(&format!("[general]\nopenmetrics_port = 6432\n{DB}"), USER),
        "pgdog.toml: general.openmetrics_port = 6432: is the same as general.port (6432), where pgdog \
         listens for clients; set another port, e.g. 9090, or remove openmetrics_port to disable metrics"
    );
    assert_eq!(
        only(
            &format!("[general]\nport = 7000\nopenmetrics_port = 7000\n{DB}"),
            USER
        ),
        "pgdog.toml: general.openmetrics_port = 7000: is the same as general.port (7000), where pgdog \
         listens for clients; set another port, e.g. 9090, or remove openmetrics_port to disable metrics"
    );
}

#[test]
fn openmetrics_namespace_must_make_valid_names() {
    assert_eq!(
        only(
            &format!("[general]\nopenmetrics_namespace = \"pg dog\"\n{DB}"),
            USER
        ),
        "pgdog.toml: general.openmetrics_namespace = \"pg dog\": contains \" \", which is not allowed \
         in metric names; use only letters, digits, \"_\" and \":\", e.g. \"pgdog_\", or remove it \
         for no prefix"
    );
    assert_eq!(
        only(
            &format!("[general]\nopenmetrics_namespace = \"1pgdog_\"\n{DB}"),
            USER
        ),
        "pgdog.toml: general.openmetrics_namespace = \"1pgdog_\": starts with a digit, but metric \
         names must not; start it with a letter or \"_\", e.g. \"pgdog_\", or remove it for no prefix"
    );
}

/// Database "shop" with shards 0 and 1.
const SHARDS: &str = "[[databases]]\nname = \"shop\"\n[[databases]]\nname = \"shop\"\nshard = 1\n";

/// `SHARDS` followed by `sharding`.
fn sharded(sharding: &str) -> String {
    format!("{SHARDS}{sharding}")
}

#[test]
fn valid_sharding_sections() {
    let config = sharded(
        "[[sharded_tables]]\ndatabase = \"shop\"\nname = \"users\"\nschema = \"public\"\n\
         column = \"id\"\nprimary = true\n\
         [[sharded_tables]]\ndatabase = \"shop\"\ncolumn = \"user_id\"\n\
         [[sharded_tables]]\ndatabase = \"shop\"\nname = \"tenants\"\ncolumn = \"tenant_id\"\n\
         [[sharded_tables.mapping]]\nvalues = [1, 2]\nshard = 0\n\
         [[sharded_tables.mapping]]\nend = 0\nshard = 1\n\
         [[sharded_tables.mapping]]\nstart = 10\nend = 20\nshard = 0\n\
         [[sharded_tables.mapping]]\nstart = 20\nshard = 1\n\
         [[sharded_tables.mapping]]\nshard = 1\n\
         [[sharded_tables]]\ndatabase = \"shop\"\ncolumn = \"country\"\ndata_type = \"varchar\"\n\
         mapping = [{ values = [\"ca\", \"us\"], shard = 0 }, { values = [\"fr\"], shard = 1 }]\n\
         [[sharded_tables]]\ndatabase = \"shop\"\ncolumn = \"ident\"\ndata_type = \"uuid\"\n\
         hasher = \"postgres\"\n\
         [[sharded_tables.mapping]]\nvalues = [\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"]\nshard = 1\n\
         [[sharded_mappings]]\ndatabase = \"shop\"\ntable = \"tenants\"\ncolumn = \"tenant_id\"\n\
         kind = \"list\"\nvalues = [3]\nshard = 1\n\
         [[sharded_mappings]]\ndatabase = \"shop\"\ntable = \"tenants\"\ncolumn = \"tenant_id\"\n\
         kind = \"range\"\nstart = 0\nend = 10\nshard = 1\n\
         [[omnisharded_tables]]\ndatabase = \"shop\"\ntables = [\"countries\", \"public.settings\"]\n\
         sticky = true\n",
    );
    assert_eq!(problems(&config, USER), Vec::<String>::new());
}

#[test]
fn sharded_table_on_one_shard_is_allowed() {
    let config = format!(
        "{DB}[[sharded_tables]]\ndatabase = \"shop\"\ncolumn = \"id\"\n\
         [[sharded_tables.mapping]]\nvalues = [1]\nshard = 0\n"
    );
    assert_eq!(problems(&config, USER), Vec::<String>::new());
}

#[test]
fn sharded_table_database_and_column_must_be_set() {
    assert_eq!(
        problems(&sharded("[[sharded_tables]]\nname = \"users\"\n"), USER),
        [
            "pgdog.toml: sharded_tables[0].database: is missing or empty; set it to the name of \
             the [[databases]] entries this table lives in",
            "pgdog.toml: sharded_tables[0].column: is missing or empty; set it to the name of the \
             sharding column, e.g. \"user_id\"",
        ]
    );
}

#[test]
fn sharded_table_database_must_exist() {
    assert_eq!(
        only(
            &sharded("[[sharded_tables]]\ndatabase = \"shpo\"\ncolumn = \"id\"\n"),
            USER
        ),
        "pgdog.toml: sharded_tables[0].database = \"shpo\": no [[databases]] entry named \"shpo\"; \
         add one or fix the name"
    );
}

#[test]
fn sharded_table_name_and_schema() {
    assert_eq!(
        problems(
            &sharded(
                "[[sharded_tables]]\ndatabase = \"shop\"\ncolumn = \"id\"\nname = \"\"\nschema = \"\"\n\
                 [[sharded_tables]]\ndatabase = \"shop\"\ncolumn = \"id\"\nname = \"public.users\"\n"
            ),
            USER
        ),
        [
            "pgdog.toml: sharded_tables[0].name = \"\": is empty; set it to the table's name, or \
             remove name to match every table that has the column \"id\"",
            "pgdog.toml: sharded_tables[0].schema = \"\": is empty; set it to the table's schema, \
             or remove schema to match any schema",
            "pgdog.toml: sharded_tables[1].name = \"public.users\": contains \".\"; set name to the \
             table's name only and schema to its schema, e.g. name = \"users\" and schema = \"public\"",
        ]
    );
}

#[test]
fn vector_sharding_and_sha1_are_not_supported() {
    assert_eq!(
        problems(
            &sharded(
                "[[sharded_tables]]\ndatabase = \"shop\"\ncolumn = \"embedding\"\n\
                 data_type = \"vector\"\ncentroids = [[1.0, 2.0]]\n\
                 centroids_path = \"centroids.json\"\ncentroid_probes = 1\nhasher = \"sha1\"\n"
            ),
            USER
        ),
        [
            "pgdog.toml: sharded_tables[0].data_type = \"vector\": vector sharding is not \
             supported by pgdog yet; use \"bigint\", \"uuid\" or \"varchar\"",
            "pgdog.toml: sharded_tables[0].centroids: is for vector sharding, which pgdog does \
             not support yet; remove it",
            "pgdog.toml: sharded_tables[0].centroids_path: is for vector sharding, which pgdog \
             does not support yet; remove it",
            "pgdog.toml: sharded_tables[0].centroid_probes: is for vector sharding, which pgdog \
             does not support yet; remove it",
            "pgdog.toml: sharded_tables[0].hasher = \"sha1\": is not supported by pgdog yet; \
             remove hasher to use \"postgres\", the default",
        ]
    );
}

#[test]
fn duplicate_sharded_table() {
    assert_eq!(
        only(
            &sharded(
                "[[sharded_tables]]\ndatabase = \"shop\"\nname = \"users\"\ncolumn = \"id\"\n\
                 [[sharded_tables]]\ndatabase = \"shop\"\nname = \"users\"\ncolumn = \"uid\"\n\
                 [[sharded_tables]]\ndatabase = \"shop\"\nname = \"users\"\ncolumn = \"id\"\n\
                 data_type = \"uuid\"\n"
            ),
            USER
        ),
        "pgdog.toml: sharded_tables[2].column = \"id\": duplicates sharded_tables[0] (same \
         database, schema, table and column); remove one of them, moving its mapping rules to the other"
    );
}

#[test]
fn mapping_shard_must_exist() {
    assert_eq!(
        only(
            &sharded(
                "[[sharded_tables]]\ndatabase = \"shop\"\ncolumn = \"id\"\n\
                 [[sharded_tables.mapping]]\nvalues = [1]\nshard = 2\n"
            ),
            USER
        ),
        "pgdog.toml: sharded_tables[0].mapping[0].shard = 2: database \"shop\" has shards 0 to 1; \
         use one of those, or add [[databases]] entries with name = \"shop\" for the missing shards"
    );
    assert_eq!(
        only(
            &format!(
                "{DB}[[sharded_tables]]\ndatabase = \"shop\"\ncolumn = \"id\"\n\
                 [[sharded_tables.mapping]]\nshard = 1\n"
            ),
            USER
        ),
        "pgdog.toml: sharded_tables[0].mapping[0].shard = 1: database \"shop\" has only shard 0; \
         use it, or add [[databases]] entries with name = \"shop\" for the missing shards"
    );
}

#[test]
fn mapping_rule_is_one_kind() {
    assert_eq!(
        problems(
            &sharded(
                "[[sharded_tables]]\ndatabase = \"shop\"\ncolumn = \"id\"\n\
                 [[sharded_tables.mapping]]\nvalues = [1]\nstart = 5\nshard = 0\n\
                 [[sharded_tables.mapping]]\nvalues = []\nshard = 1\n"
            ),
            USER
        ),
        [
            "pgdog.toml: sharded_tables[0].mapping[0].values: a rule is either a list (values) or \
             a range (start and/or end), not both; split it into two rules",
            "pgdog.toml: sharded_tables[0].mapping[1].values = []: is empty; list the values that \
             go to this shard, or remove values to make this the default rule",
        ]
    );
}

#[test]
fn mapping_values_fit_the_data_type() {
    let table = |data_type: &str, rule: &str| {
        sharded(&format!(
            "[[sharded_tables]]\ndatabase = \"shop\"\ncolumn = \"k\"\ndata_type = \"{data_type}\"\n\
             [[sharded_tables.mapping]]\n{rule}\nshard = 0\n"
        ))
    };
    assert_eq!(
        problems(&table("bigint", "values = [1, \"2\"]"), USER),
        ["pgdog.toml: sharded_tables[0].mapping[0].values = \"2\": is a string, but data_type is \
          \"bigint\"; write the number without quotes"]
    );
    assert_eq!(
        problems(&table("varchar", "values = [\"a\", 7]"), USER),
        [
            "pgdog.toml: sharded_tables[0].mapping[0].values = 7: is a number, but data_type is \
          \"varchar\"; write it in double quotes, e.g. \"7\""
        ]
    );
    assert_eq!(
        problems(
            &table("uuid", "values = [7, \"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1\"]"),
            USER
        ),
        [
            "pgdog.toml: sharded_tables[0].mapping[0].values = 7: is a number, but data_type is \
             \"uuid\"; write the UUID in double quotes, e.g. \"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"",
            "pgdog.toml: sharded_tables[0].mapping[0].values = \"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1\": \
             is not a UUID, but data_type is \"uuid\"; write 32 hex digits in the usual groups, \
             e.g. \"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"",
        ]
    );
    assert_eq!(
        problems(&table("bigint", "start = \"1\"\nend = 5"), USER),
        ["pgdog.toml: sharded_tables[0].mapping[0].start = \"1\": is a string, but data_type is \
          \"bigint\"; write the number without quotes"]
    );
    assert_eq!(
        problems(&table("text", "start = \"a\"\nend = \"m\""), USER),
        [
            "pgdog.toml: sharded_tables[0].mapping[0].start = \"a\": range rules work on bigint \
          columns only, and data_type is \"varchar\"; list the values instead (values = [...])"
        ]
    );
}

#[test]
fn range_end_must_be_above_start() {
    assert_eq!(
        only(
            &sharded(
                "[[sharded_tables]]\ndatabase = \"shop\"\ncolumn = \"id\"\n\
                 [[sharded_tables.mapping]]\nstart = 5\nend = 5\nshard = 0\n"
            ),
            USER
        ),
        "pgdog.toml: sharded_tables[0].mapping[0].end = 5: is not greater than start (5); a range \
         covers start up to but not including end, so end must be greater"
    );
}

#[test]
fn list_values_are_unique_per_table() {
    assert_eq!(
        problems(
            &sharded(
                "[[sharded_tables]]\ndatabase = \"shop\"\ncolumn = \"id\"\n\
                 [[sharded_tables.mapping]]\nvalues = [1, 2, 1]\nshard = 0\n\
                 [[sharded_tables.mapping]]\nvalues = [3, 2]\nshard = 1\n\
                 [[sharded_tables]]\ndatabase = \"shop\"\ncolumn = \"other\"\n\
                 [[sharded_tables.mapping]]\nvalues = [1, 2, 3]\nshard = 1\n"
            ),
            USER
        ),
        [
            "pgdog.toml: sharded_tables[0].mapping[0].values = 1: is listed twice in this rule; \
             remove one",
            "pgdog.toml: sharded_tables[0].mapping[1].values = 2: is also listed in \
             sharded_tables[0].mapping[0]; a value goes to one shard only: remove it from one of the rules",
        ]
    );
}

#[test]
fn uuid_values_compare_as_uuids() {
    assert_eq!(
        only(
            &sharded(
                "[[sharded_tables]]\ndatabase = \"shop\"\ncolumn = \"id\"\ndata_type = \"uuid\"\n\
                 [[sharded_tables.mapping]]\nvalues = [\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"]\nshard = 0\n\
                 [[sharded_tables.mapping]]\nvalues = [\"{A0EEBC999C0B4EF8BB6D6BB9BD380A11}\"]\nshard = 1\n"
            ),
            USER
        ),
        "pgdog.toml: sharded_tables[0].mapping[1].values = \"{A0EEBC999C0B4EF8BB6D6BB9BD380A11}\": \
         is also listed in sharded_tables[0].mapping[0]; a value goes to one shard only: remove it \
         from one of the rules"
    );
}

#[test]
fn ranges_must_not_overlap() {
    assert_eq!(
        problems(
            &sharded(
                "[[sharded_tables]]\ndatabase = \"shop\"\ncolumn = \"id\"\n\
                 [[sharded_tables.mapping]]\nstart = 0\nend = 10\nshard = 0\n\
                 [[sharded_tables.mapping]]\nstart = 10\nend = 20\nshard = 1\n\
                 [[sharded_tables.mapping]]\nstart = 15\nend = 16\nshard = 0\n\
                 [[sharded_tables.mapping]]\nend = 1\nshard = 1\n\
                 [[sharded_tables.mapping]]\nstart = 20\nshard = 0\n\
                 [[sharded_tables.mapping]]\nstart = 100\nshard = 1\n"
            ),
            USER
        ),
        [
            "pgdog.toml: sharded_tables[0].mapping[2].start = 15: this range (15 up to 16) \
             overlaps the range of sharded_tables[0].mapping[1] (10 up to 20); each value goes to \
             one shard only: change start or end so they do not overlap",
            "pgdog.toml: sharded_tables[0].mapping[3].end = 1: this range (below 1) overlaps the \
             range of sharded_tables[0].mapping[0] (0 up to 10); each value goes to one shard \
             only: change start or end so they do not overlap",
            "pgdog.toml: sharded_tables[0].mapping[5].start = 100: this range (100 and up) \
             overlaps the range of sharded_tables[0].mapping[4] (20 and up); each value goes to \
             one shard only: change start or end so they do not overlap",
        ]
    );
}

#[test]
fn one_default_rule_per_table() {
    assert_eq!(
        only(
            &sharded(
                "[[sharded_tables]]\ndatabase = \"shop\"\ncolumn = \"id\"\n\
                 [[sharded_tables.mapping]]\nshard = 0\n\
                 [[sharded_tables.mapping]]\nvalues = [1]\nshard = 1\n\
                 [[sharded_tables.mapping]]\nshard = 1\n"
            ),
            USER
        ),
        "pgdog.toml: sharded_tables[0].mapping[2].shard = 1: is a second default rule (a rule \
         with only shard) for this table; the first is sharded_tables[0].mapping[0]; keep only one"
    );
}

#[test]
fn sharded_mappings_need_their_table() {
    assert_eq!(
        problems(
            &sharded(
                "[[sharded_tables]]\ndatabase = \"shop\"\nname = \"users\"\ncolumn = \"id\"\n\
                 [[sharded_mappings]]\ndatabase = \"shop\"\ncolumn = \"id\"\nvalues = [1]\nshard = 0\n\
                 [[sharded_mappings]]\ndatabase = \"shop\"\ntable = \"users\"\nschema = \"app\"\n\
                 column = \"id\"\nvalues = [1]\nshard = 0\n\
                 [[sharded_mappings]]\ndatabase = \"nope\"\ncolumn = \"id\"\nshard = 0\n\
                 [[sharded_mappings]]\nshard = 0\n"
            ),
            USER
        ),
        [
            "pgdog.toml: sharded_mappings[0].column = \"id\": no [[sharded_tables]] entry has \
             database = \"shop\", column = \"id\" and no name; add one (it sets the column's \
             data_type) or fix this rule's database, table and column",
            "pgdog.toml: sharded_mappings[1].column = \"id\": no [[sharded_tables]] entry has \
             database = \"shop\", column = \"id\" and name = \"users\" and schema = \"app\"; add one \
             (it sets the column's data_type) or fix this rule's database, table and column",
            "pgdog.toml: sharded_mappings[2].database = \"nope\": no [[databases]] entry named \
             \"nope\"; add one or fix the name",
            "pgdog.toml: sharded_mappings[3].database: is missing or empty; set it to the name of \
             the [[databases]] entries the sharded table lives in",
            "pgdog.toml: sharded_mappings[3].column: is missing or empty; set it to the column of \
             the [[sharded_tables]] entry this rule is for",
        ]
    );
}

#[test]
fn sharded_mappings_kind_must_fit() {
    let mapping = |rule: &str| {
        sharded(&format!(
            "[[sharded_tables]]\ndatabase = \"shop\"\ncolumn = \"id\"\n\
             [[sharded_mappings]]\ndatabase = \"shop\"\ncolumn = \"id\"\n{rule}\nshard = 0\n"
        ))
    };
    assert_eq!(
        only(&mapping("kind = \"list\"\nstart = 1"), USER),
        "pgdog.toml: sharded_mappings[0].kind = \"list\": does not fit the other keys: a list rule \
         needs values; fix kind or those keys"
    );
    assert_eq!(
        only(&mapping("kind = \"range\"\nvalues = [1]"), USER),
        "pgdog.toml: sharded_mappings[0].kind = \"range\": does not fit the other keys: a range \
         rule needs start and/or end, and no values; fix kind or those keys"
    );
    assert_eq!(
        only(&mapping("kind = \"default\"\nend = 1"), USER),
        "pgdog.toml: sharded_mappings[0].kind = \"default\": does not fit the other keys: a \
         default rule takes no values, start or end; fix kind or those keys"
    );
    assert_eq!(
        problems(&mapping("kind = \"default\""), USER),
        Vec::<String>::new()
    );
}

#[test]
fn sharded_mappings_join_the_table_rules() {
    assert_eq!(
        problems(
            &sharded(
                "[[sharded_tables]]\ndatabase = \"shop\"\nname = \"users\"\ncolumn = \"id\"\n\
                 [[sharded_tables.mapping]]\nvalues = [1]\nshard = 0\n\
                 [[sharded_tables.mapping]]\nstart = 100\nshard = 0\n\
                 [[sharded_mappings]]\ndatabase = \"shop\"\ntable = \"users\"\ncolumn = \"id\"\n\
                 kind = \"list\"\nvalues = [\"1\", 1]\nshard = 2\n\
                 [[sharded_mappings]]\ndatabase = \"shop\"\ntable = \"users\"\ncolumn = \"id\"\n\
                 kind = \"range\"\nstart = 50\nend = 150\nshard = 1\n"
            ),
            USER
        ),
        [
            "pgdog.toml: sharded_mappings[0].shard = 2: database \"shop\" has shards 0 to 1; use \
             one of those, or add [[databases]] entries with name = \"shop\" for the missing shards",
            "pgdog.toml: sharded_mappings[0].values = \"1\": is a string, but data_type is \
             \"bigint\"; write the number without quotes",
            "pgdog.toml: sharded_mappings[0].values = 1: is also listed in \
             sharded_tables[0].mapping[0]; a value goes to one shard only: remove it from one of the rules",
            "pgdog.toml: sharded_mappings[1].start = 50: this range (50 up to 150) overlaps the \
             range of sharded_tables[0].mapping[1] (100 and up); each value goes to one shard \
             only: change start or end so they do not overlap",
        ]
    );
}

#[test]
fn sharded_mapping_for_two_tables_is_reported_once() {
    assert_eq!(
        only(
            &sharded(
                "[[sharded_tables]]\ndatabase = \"shop\"\nname = \"t\"\nschema = \"a\"\ncolumn = \"id\"\n\
                 [[sharded_tables]]\ndatabase = \"shop\"\nname = \"t\"\nschema = \"b\"\ncolumn = \"id\"\n\
                 [[sharded_mappings]]\ndatabase = \"shop\"\ntable = \"t\"\ncolumn = \"id\"\n\
                 values = [1, 1]\nshard = 0\n"
            ),
            USER
        ),
        "pgdog.toml: sharded_mappings[0].values = 1: is listed twice in this rule; remove one"
    );
}

#[test]
fn omnisharded_tables_rules() {
    assert_eq!(
        problems(
            &sharded(
                "[[sharded_tables]]\ndatabase = \"shop\"\nname = \"users\"\nschema = \"app\"\ncolumn = \"id\"\n\
                 [[omnisharded_tables]]\ndatabase = \"shop\"\n\
                 tables = [\"countries\", \"\", \"users\", \"countries\", \"other.users\"]\n\
                 [[omnisharded_tables]]\ndatabase = \"shop\"\ntables = [\"app.users\"]\nsticky = true\n\
                 [[omnisharded_tables]]\ndatabase = \"nope\"\n\
                 [[omnisharded_tables]]\ntables = [\"x\"]\n"
            ),
            USER
        ),
        [
            "pgdog.toml: omnisharded_tables[0].tables[1] = \"\": is empty; set the table's name or \
             remove it",
            "pgdog.toml: omnisharded_tables[0].tables[2] = \"users\": is also a sharded table \
             (sharded_tables[0]); a table either has its rows split over the shards or the same \
             rows on every shard: remove it here or remove sharded_tables[0]",
            "pgdog.toml: omnisharded_tables[0].tables[3] = \"countries\": is already listed for \
             database \"shop\" at omnisharded_tables[0].tables[0]; remove one of them",
            "pgdog.toml: omnisharded_tables[1].tables[0] = \"app.users\": is also a sharded table \
             (sharded_tables[0]); a table either has its rows split over the shards or the same \
             rows on every shard: remove it here or remove sharded_tables[0]",
            "pgdog.toml: omnisharded_tables[2].database = \"nope\": no [[databases]] entry named \
             \"nope\"; add one or fix the name",
            "pgdog.toml: omnisharded_tables[2].tables = []: is empty; list the tables that hold \
             the same rows on every shard, or remove this entry",
            "pgdog.toml: omnisharded_tables[3].database: is missing or empty; set it to the name \
             of the [[databases]] entries these tables live in",
        ]
    );
}
