//! Client and server authentication methods, and refused logins.

use integration::{
    cluster_with, free_port, single_database_config, sqlstate, HostAuth, LocalOptions,
    PgdogProcess, Setup,
};

async fn login_error(setup: &PgdogProcess, user: &str, password: &str, database: &str) -> String {
    match setup.connect(user, password, database).await {
        Ok(_) => panic!("login of {user} to {database} should fail"),
        Err(e) => sqlstate(&e).unwrap_or_else(|| format!("no SQLSTATE: {e}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_logins_get_the_right_sqlstate_and_the_pooler_stays_up() {
    let setup = Setup::new("", "");
    assert_eq!(
        login_error(&setup.pgdog, "postgres", "wrong", "app").await,
        "28P01"
    );
    assert_eq!(
        login_error(&setup.pgdog, "nobody", "postgres", "app").await,
        "28P01"
    );
    assert_eq!(
        login_error(&setup.pgdog, "postgres", "postgres", "nodb").await,
        "3D000"
    );
    let out = integration::tools::psql(
        setup.pgdog.port(),
        "postgres",
        "wrong",
        "app",
        &["-c", "select 1"],
    );
    assert!(
        out.stderr
            .contains("password authentication failed for user \"postgres\""),
        "{}",
        out.stderr
    );
    let client = setup.connect().await;
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

/// pgdog in front of a cluster whose pg_hba uses `server_auth`, with client auth `client_auth`.
async fn check_methods(server_auth: HostAuth, client_auth: &str) {
    let cluster = cluster_with(LocalOptions {
        host_auth: server_auth,
        ..LocalOptions::default()
    });
    let port = free_port();
    let config = single_database_config(
        &cluster,
        "app",
        port,
        &format!("auth_type = \"{client_auth}\""),
    );
    let users = integration::single_user_config("app", "");
    let pgdog = PgdogProcess::start(&config, &users, port);
    let client = pgdog
        .connect("postgres", "postgres", "app")
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{client_auth} client / {server_auth:?} server: {e}\n{}",
                pgdog.log()
            )
        });
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    if client_auth != "trust" {
        assert_eq!(
            login_error(&pgdog, "postgres", "nope", "app").await,
            "28P01"
        );
    } else {
        // trust: any password is fine for a configured user, unknown users are still refused.
        assert!(pgdog.connect("postgres", "whatever", "app").await.is_ok());
        assert_eq!(login_error(&pgdog, "ghost", "x", "app").await, "28P01");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_clients_scram_server() {
    check_methods(HostAuth::ScramSha256, "scram").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_clients_md5_server() {
    check_methods(HostAuth::Md5, "md5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_clients_trust_server() {
    check_methods(HostAuth::Trust, "trust").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_logs_in_with_md5_and_scram() {
    for auth in ["md5", "scram"] {
        let setup = Setup::new(&format!("auth_type = \"{auth}\""), "");
        let out = setup.psql(&["-c", "SELECT current_user"]);
        assert_eq!(out.code, 0, "{auth}: {}", out.stderr);
        assert_eq!(out.stdout.trim(), "postgres");
    }
}
