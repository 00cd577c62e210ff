//! PgBouncer started from the Debian package, run as an unprivileged user when we are root.

use super::*;

/// A running PgBouncer with its own temp dir; killed and the dir removed on drop.
pub(crate) struct PgBouncer {
    pub(crate) child: Option<Child>,
    pub(crate) dir: PathBuf,
    pub(crate) port: u16,
}

impl PgBouncer {
    /// Writes an ini for `server_port` into a new temp dir and starts `binary` on it, as the OS
    /// user `pgdog_test` when we are root (PgBouncer refuses to run as root).
    pub(crate) fn start(binary: &Path, server_port: u16) -> Result<PgBouncer, String> {
        let dir =
            std::env::temp_dir().join(format!("pgdog-bench-pgbouncer-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let port = free_port();
        // From here on an early return drops `bouncer`, which removes the dir.
        let mut bouncer = PgBouncer {
            child: None,
            dir,
            port,
        };
        let dir = bouncer.dir.clone();
        let ini = format!(
            "[databases]\n{DATABASE} = host=127.0.0.1 port={server_port} dbname={DATABASE}\n\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = scram-sha-256\nauth_file = {userlist}\npool_mode = transaction\n\
             default_pool_size = {POOL_SIZE}\nmin_pool_size = 0\nreserve_pool_size = 0\n\
             max_client_conn = 1000\nserver_tls_sslmode = disable\n\
             log_connections = 0\nlog_disconnections = 0\nlogfile = {log}\n",
            userlist = dir.join("userlist.txt").display(),
            log = dir.join("pgbouncer.log").display(),
        );
        let files = [
            ("pgbouncer.ini", ini),
            ("userlist.txt", format!("\"{USER}\" \"{PASSWORD}\"\n")),
        ];
        for (name, text) in files {
            let path = dir.join(name);
            fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
        }
        let run_as = server_user()?;
        if let Some((uid, gid)) = run_as {
            for path in [
                dir.clone(),
                dir.join("pgbouncer.ini"),
                dir.join("userlist.txt"),
            ] {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                    .map_err(|e| format!("chown {} to pgdog_test: {e}", path.display()))?;
            }
        }
        let out_path = dir.join("pgbouncer.out");
        let out =
            File::create(&out_path).map_err(|e| format!("create {}: {e}", out_path.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("dup {}: {e}", out_path.display()))?;
        let mut cmd = Command::new(binary);
        cmd.arg(dir.join("pgbouncer.ini"))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if let Some((uid, gid)) = run_as {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        bouncer.child = Some(child);
        bouncer.wait_ready()?;
        Ok(bouncer)
    }

    pub(crate) fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Err(format!(
                    "pgbouncer exited with {status} at startup:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "pgbouncer did not listen on 127.0.0.1:{} within 20 s:\n{}",
            self.port,
            self.log()
        ))
    }

    /// Its log file and its stdout/stderr.
    pub(crate) fn log(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("{}{}", read("pgbouncer.out"), read("pgbouncer.log"))
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// (uid, gid) of the unprivileged user LocalCluster runs Postgres as when we are root (PgBouncer
/// refuses to run as root), `None` when we are not root.
pub(crate) fn server_user() -> Result<Option<(u32, u32)>, String> {
    pgdog::local::server_os_user().map_err(|e| e.to_string())
}

/// `pgbouncer` on PATH or in the sbin directories (not on a normal user's PATH on Debian).
pub(crate) fn find_pgbouncer() -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join("pgbouncer");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(
        "pgbouncer not found on PATH or in /usr/sbin; install it (apt-get install pgbouncer) \
         or run benches/pooler.sh, which does"
            .into(),
    )
}

// ---------------------------------------------------------------------------------------------
// pgbench runs
