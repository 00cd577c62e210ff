//! Finding the PostgreSQL binaries and running commands: as the current user,
//! or, when we are root, as the OS user `pgdog_test` (created on first use),
//! since initdb, pg_ctl and postgres refuse to run as root.

use std::ffi::{CString, OsStr};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::{fs::OpenOptionsExt, process::CommandExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};

use tracing::{debug, info};

use super::error::io_err;
use super::LocalError;

/// The PostgreSQL installation in use, and who runs its server binaries.
#[derive(Debug)]
pub(super) struct Install {
    /// Directory holding initdb, pg_ctl, postgres and psql.
    pub bindir: PathBuf,
    /// Major version, e.g. "15".
    pub major: String,
    /// (uid, gid) of `pgdog_test` when we are root; `None`: the current user.
    pub run_as: Option<(u32, u32)>,
}

/// The process-wide installation, located (and the user made) on first use.
pub(super) fn install() -> Result<&'static Install, LocalError> {
    static INSTALL: OnceLock<Install> = OnceLock::new();
    static INIT: Mutex<()> = Mutex::new(());
    let _guard = INIT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(found) = INSTALL.get() {
        return Ok(found);
    }
    let bindir = match std::env::var_os("PG_BINDIR").filter(|dir| !dir.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => run(user_cmd("pg_config").arg("--bindir"))
            .map(|out| PathBuf::from(out.trim()))
            .map_err(|err| LocalError::NotInstalled(err.to_string()))?,
    };
    for bin in ["initdb", "pg_ctl", "postgres", "psql"].map(|bin| bindir.join(bin)) {
        if !bin.is_file() {
            return Err(LocalError::NotInstalled(format!("no {}", bin.display())));
        }
    }
    // "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)" -> "15"
    let version = run(Command::new(bindir.join("postgres")).arg("--version"))?;
    let word = version.split_whitespace().nth(2).unwrap_or_default();
    let major = word.split('.').next().unwrap_or_default().to_string();
    if major.is_empty() || !major.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LocalError::NotInstalled(format!("version {version:?}")));
    }
    let run_as = (euid() == 0).then(ensure_server_user).transpose()?;
    info!(bindir = %bindir.display(), major, ?run_as, "using local PostgreSQL");
    Ok(INSTALL.get_or_init(|| Install {
        bindir,
        major,
        run_as,
    }))
}

/// Effective uid of this process.
pub(super) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

impl Install {
    /// Path of a PostgreSQL binary.
    pub(super) fn bin(&self, name: &str) -> PathBuf {
        self.bindir.join(name)
    }

    /// uid owning cluster files: the server user's, else ours.
    pub(super) fn owner_uid(&self) -> u32 {
        self.run_as.map_or_else(euid, |(uid, _)| uid)
    }

    /// Command for `program` run as the server user (std calls setgroups(0),
    /// setgid and setuid in the child before exec).
    pub(super) fn server_cmd(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = user_cmd(program);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// Gives `path` to the server user; nothing to do when we are not root.
    pub(super) fn chown(&self, path: &Path) -> Result<(), LocalError> {
        let Some((uid, gid)) = self.run_as else {
            return Ok(());
        };
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io_err("chown", path))
    }
}

/// Command for `program` as the current user: no stdin, run in the temp dir,
/// without our PG* variables (they could redirect or alter it).
pub(super) fn user_cmd(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(std::env::temp_dir()).stdin(Stdio::null());
    cmd
}

/// Runs `cmd` to completion: its stdout, or an error with its stderr.
pub(super) fn run(cmd: &mut Command) -> Result<String, LocalError> {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line = format!("{line} {}", arg.to_string_lossy());
    }
    debug!(command = %line, "running");
    let output = cmd.output();
    let out = output.map_err(|e| LocalError::Spawn(line.clone(), e))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let text = String::from_utf8_lossy(&[out.stderr, out.stdout].concat())
        .trim()
        .to_string();
    Err(LocalError::Command(line, out.status.to_string(), text))
}

/// Exclusive flock on `path` (created if missing), held until the file drops.
pub(super) fn lock_file(path: &Path) -> Result<File, LocalError> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).mode(0o600);
    let file = options.custom_flags(libc::O_NOFOLLOW).open(path);
    let file = file.map_err(io_err("open", path))?;
    // SAFETY: flock on a descriptor we own; the lock goes when it is closed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io_err("lock", path)(std::io::Error::last_os_error()));
    }
    Ok(file)
}

/// (uid, gid) of OS user `pgdog_test`, if it exists.
fn lookup_user() -> Option<(u32, u32)> {
    let name = CString::new("pgdog_test").ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is plain data; getpwnam_r writes only into `pwd` and `buf`
    // (whose length we pass) and sets `found` to null or to `&pwd`.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let (ptr, len) = (buf.as_mut_ptr(), buf.len());
        let rc = libc::getpwnam_r(name.as_ptr(), &mut pwd, ptr, len, &mut found);
        (rc == 0 && !found.is_null()).then_some((pwd.pw_uid, pwd.pw_gid))
    }
}

/// Finds or creates `pgdog_test`. Concurrent `useradd` runs can silently
/// overwrite each other (seen here: all succeed, and the uid changes under the
/// first ones), so processes take turns on a lock file and re-check under it.
fn ensure_server_user() -> Result<(u32, u32), LocalError> {
    if let Some(ids) = lookup_user() {
        return Ok(ids);
    }
    let _lock = lock_file(Path::new("/tmp/pgdog-useradd.lock"))?;
    if let Some(ids) = lookup_user() {
        return Ok(ids);
    }
    let mut useradd = user_cmd("useradd");
    useradd.args("--system --no-create-home --shell /usr/sbin/nologin".split(' '));
    let failed = run(useradd.arg("pgdog_test")).err();
    // Re-check even after a failure: a process not using our lock may have won.
    let ids = lookup_user().ok_or_else(|| {
        let why = failed.map_or("useradd made no such user".into(), |e| e.to_string());
        LocalError::User(why)
    })?;
    info!(
        uid = ids.0,
        "created OS user pgdog_test to run PostgreSQL as"
    );
    Ok(ids)
}
