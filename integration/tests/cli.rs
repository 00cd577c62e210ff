//! The `pgdog` command line, run as a real process: `configcheck`, config errors, `hash`, and
//! where the config files are looked for.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use integration::pgdog_process::pgdog_binary;
use integration::{free_port, single_database_config, single_user_config, sqlstate, PgdogProcess};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// A fresh empty directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pgdog-cli-{label}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `pgdog` with `args`, without PGDOG_CONFIG / PGDOG_USERS from the environment.
fn pgdog(args: &[&str]) -> Command {
    let mut command = Command::new(pgdog_binary());
    command
        .args(args)
        .env_remove("PGDOG_CONFIG")
        .env_remove("PGDOG_USERS")
        .stdin(Stdio::null());
    command
}

fn run(command: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn configcheck(config: &Path, users: &Path) -> (i32, String, String) {
    run(pgdog(&["configcheck"])
        .arg("-c")
        .arg(config)
        .arg("-u")
        .arg(users))
}

fn example(name: &str) -> PathBuf {
    workspace().join(name)
}

#[test]
fn configcheck_accepts_the_example_files() {
    let (config, users) = (example("pgdog.toml.example"), example("users.toml.example"));
    let (code, stdout, stderr) = configcheck(&config, &users);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
}

/// Asserts a failed configcheck whose stderr contains every one of `expected`.
fn assert_rejected(output: (i32, String, String), expected: &[&str]) {
    let (code, stdout, stderr) = output;
    assert_ne!(
        code, 0,
        "configcheck should fail\nstdout: {stdout}\nstderr: {stderr}"
    );
    for needle in expected {
        assert!(
            stderr.contains(needle),
            "stderr should contain {needle:?}:\n{stderr}"
        );
    }
}

/// Runs configcheck on two file texts and asserts it fails with a message containing each of
/// `needles`; `{config}` and `{users}` in a needle stand for the files' paths.
fn assert_config_rejected(name: &str, config: &str, users: &str, needles: &[&str]) {
    let dir = TempDir::new(name);
    let config_path = dir.write("pgdog.toml", config);
    let users_path = dir.write("users.toml", users);
    let needles: Vec<String> = needles
        .iter()
        .map(|n| {
            n.replace("{config}", &config_path.display().to_string())
                .replace("{users}", &users_path.display().to_string())
        })
        .collect();
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    assert_rejected(configcheck(&config_path, &users_path), &needles);
}

const ONE_USER: &str = "[[users]]\nname = \"u\"\ndatabase = \"app\"\npassword = \"p\"\n";

#[test]
fn configcheck_rejects_an_unknown_key() {
    // The file, the key (with its section), and the fix: the valid key is listed.
    assert_config_rejected(
        "unknown-key",
        "[general]\nport = 6432\ndefault_pool_sise = 5\n\n[[databases]]\nname = \"app\"\n",
        ONE_USER,
        &["{config}", "general.default_pool_sise", "default_pool_size"],
    );
}

#[test]
fn configcheck_rejects_an_unknown_key_in_users_toml() {
    assert_config_rejected(
        "unknown-user-key",
        "[[databases]]\nname = \"app\"\n",
        "[[users]]\nname = \"u\"\ndatabase = \"app\"\npasword = \"p\"\n",
        &["{users}", "pasword", "password"],
    );
}

#[test]
fn configcheck_rejects_a_bad_enum_value() {
    // The fix: the accepted values.
    assert_config_rejected(
        "bad-enum",
        "[general]\npooler_mode = \"statement\"\n\n[[databases]]\nname = \"app\"\n",
        ONE_USER,
        &[
            "{config}",
            "pooler_mode",
            "statement",
            "\"transaction\"",
            "\"session\"",
        ],
    );
}

#[test]
fn configcheck_rejects_a_user_of_a_missing_database() {
    let dir = TempDir::new("missing-db");
    let config = dir.write("pgdog.toml", "[[databases]]\nname = \"app\"\n");
    let users = dir.write(
        "users.toml",
        "[[users]]\nname = \"u\"\ndatabase = \"app\"\npassword = \"p\"\n\n\
         [[users]]\nname = \"v\"\ndatabase = \"shop\"\npassword = \"p\"\n",
    );
    // The key is the second user's database; the fix points at [[databases]] in pgdog.toml.
    assert_rejected(
        configcheck(&config, &users),
        &[
            &users.display().to_string(),
            "users[1].database",
            "shop",
            "[[databases]]",
            &config.display().to_string(),
        ],
    );
}

#[test]
fn configcheck_reports_a_missing_file() {
    let dir = TempDir::new("missing-file");
    let users = dir.write(
        "users.toml",
        "[[users]]\nname = \"u\"\ndatabase = \"app\"\npassword = \"p\"\n",
    );
    let config = dir.0.join("nowhere.toml");
    // The path, and the fix: create it from the example or point --config elsewhere.
    assert_rejected(
        configcheck(&config, &users),
        &[
            &config.display().to_string(),
            "pgdog.toml.example",
            "--config",
        ],
    );
    let config = dir.write("pgdog.toml", "[[databases]]\nname = \"app\"\n");
    let users = dir.0.join("nobody.toml");
    assert_rejected(
        configcheck(&config, &users),
        &[
            &users.display().to_string(),
            "users.toml.example",
            "--users",
        ],
    );
}

#[test]
fn short_and_long_flags_name_the_files() {
    let (config, users) = (example("pgdog.toml.example"), example("users.toml.example"));
    let dir = TempDir::new("flags");
    let broken = dir.write("broken.toml", "[general]\nport = \"not a number\"\n");
    for (c, u) in [("-c", "-u"), ("--config", "--users")] {
        let (code, stdout, stderr) =
            run(pgdog(&["configcheck", c]).arg(&config).arg(u).arg(&users));
        assert_eq!(code, 0, "{c} {u}: {stdout}{stderr}");
        // They are really the files read: a broken one is named in the error.
        let (code, _, stderr) = run(pgdog(&["configcheck", c]).arg(&broken).arg(u).arg(&users));
        assert_ne!(code, 0, "{c} with a broken file");
        assert!(
            stderr.contains(&broken.display().to_string()),
            "{c}: {stderr}"
        );
        let (code, _, stderr) = run(pgdog(&["configcheck", c]).arg(&config).arg(u).arg(&broken));
        assert_ne!(code, 0, "{u} with a broken file");
        assert!(
            stderr.contains(&broken.display().to_string()),
            "{u}: {stderr}"
        );
    }
}

#[test]
fn configcheck_defaults_to_files_in_the_current_directory() {
    let dir = TempDir::new("defaults");
    // Nothing there: both default names are looked up in the current directory.
    let (code, _, stderr) = run(pgdog(&["configcheck"]).current_dir(&dir.0));
    assert_ne!(code, 0);
    assert!(stderr.contains("pgdog.toml"), "{stderr}");
    std::fs::copy(example("pgdog.toml.example"), dir.0.join("pgdog.toml")).unwrap();
    let (code, _, stderr) = run(pgdog(&["configcheck"]).current_dir(&dir.0));
    assert_ne!(code, 0);
    assert!(stderr.contains("users.toml"), "{stderr}");
    std::fs::copy(example("users.toml.example"), dir.0.join("users.toml")).unwrap();
    let (code, stdout, stderr) = run(pgdog(&["configcheck"]).current_dir(&dir.0));
    assert_eq!(code, 0, "{stdout}{stderr}");
}

/// A child process killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `command` with stderr to `log_path` and waits until it listens on `port`.
fn start_listening(command: &mut Command, port: u16, log_path: &Path) -> Running {
    let log = std::fs::File::create(log_path).unwrap();
    let child = command.stdout(Stdio::null()).stderr(log).spawn().unwrap();
    let mut child = Running(child);
    wait_listening(&mut child, port, log_path);
    child
}

/// A tokio-postgres connection from a libpq connection string, its task spawned.
async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    tokio::spawn(connection);
    client
}

fn wait_listening(child: &mut Running, port: u16, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!(
                "pgdog exited with {status}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("pgdog did not listen on {port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgdog_runs_with_the_config_files_in_the_current_directory() {
    let cluster = integration::cluster();
    let dir = TempDir::new("run-defaults");
    let port = free_port();
    dir.write(
        "pgdog.toml",
        &single_database_config(&cluster, "app", port, ""),
    );
    dir.write("users.toml", &single_user_config("app", ""));
    let log_path = dir.0.join("pgdog.log");
    let _pgdog = start_listening(pgdog(&[]).current_dir(&dir.0), port, &log_path);
    let client = connect(&format!(
        "host=127.0.0.1 port={port} user=postgres password=postgres dbname=app"
    ))
    .await;
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashed_password_logs_in_with_a_different_server_password() {
    let (code, stdout, stderr) = run(&mut pgdog(&["hash", "secret"]));
    assert_eq!(code, 0, "{stderr}");
    let secret = stdout.trim().to_string();
    assert!(
        secret.starts_with("SCRAM-SHA-256$4096:") && secret.contains('=') && secret.contains(':'),
        "not a SCRAM secret: {secret:?}"
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    // A fresh salt every time.
    let (_, again, _) = run(&mut pgdog(&["hash", "secret"]));
    assert_ne!(again.trim(), secret);

    let cluster = integration::cluster();
    let port = free_port();
    let config = single_database_config(&cluster, "app", port, "");
    let users = format!(
        "[[users]]\nname = \"postgres\"\ndatabase = \"app\"\npassword_hash = \"{secret}\"\nserver_password = \"postgres\"\n"
    );
    let dir = TempDir::new("hash");
    let (config_path, users_path) = (
        dir.write("pgdog.toml", &config),
        dir.write("users.toml", &users),
    );
    let (code, stdout, stderr) = configcheck(&config_path, &users_path);
    assert_eq!(code, 0, "{stdout}{stderr}");

    let pgdog = PgdogProcess::start(&config, &users, port);
    let client = match pgdog.connect("postgres", "secret", "app").await {
        Ok(client) => client,
        Err(e) => panic!(
            "login with password \"secret\" failed: {e:?}\n{}",
            pgdog.log()
        ),
    };
    let user: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, "postgres");
    // The server's own password is not the client's.
    let err = pgdog
        .connect("postgres", "postgres", "app")
        .await
        .expect_err("the server password must not log a client in");
    assert_eq!(sqlstate(&err).as_deref(), Some("28P01"), "{err:?}");
}
