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
