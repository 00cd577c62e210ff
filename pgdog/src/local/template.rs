//! The template data directory that clusters copy instead of running initdb:
//! one per PostgreSQL major version and OS user, shared by all processes, at
//! `<temp_dir>/pgdog-pg-template-<major>-<euid>`. Nothing cluster-specific is
//! ever written into it.
//!
//! Threads of a process take turns on a mutex, processes on a lock file, so a
//! single initdb runs. It writes a staging directory that is renamed into
//! place, so the template, once there, is complete; should a rename lose a
//! race anyway, the winner's template is used.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use tracing::{info, warn};

use super::error::io_err;
use super::exec::{euid, lock_file, run, Install};
use super::LocalError;

/// The template directory, made first if it does not exist (or is damaged).
pub(super) fn template(install: &Install) -> Result<PathBuf, LocalError> {
    static BUILD: Mutex<()> = Mutex::new(());
    let _guard = BUILD.lock().unwrap_or_else(PoisonError::into_inner);
    let name = format!("pgdog-pg-template-{}-{}", install.major, euid());
    let path = std::env::temp_dir().join(&name);
    if is_complete(&path, install)? {
        return Ok(path);
    }
    let _lock = lock_file(&path.with_file_name(format!("{name}.lock")))?;
    if is_complete(&path, install)? {
        return Ok(path);
    }
    // We hold the lock: what is here is damaged or left by a process that died.
    if path.exists() {
        warn!(path = %path.display(), "template data directory is incomplete, rebuilding it");
        let _ = fs::remove_dir_all(&path);
    }
    let staging = path.with_file_name(format!("{name}.tmp"));
    let _ = fs::remove_dir_all(&staging);
    let build = || {
        fs::create_dir(&staging).map_err(io_err("create", &staging))?;
        install.chown(&staging)?;
        let mut initdb = install.server_cmd(install.bin("initdb"));
        let flags = "-U postgres -A scram-sha-256 --auth-local=trust -E UTF8 --locale=C --no-sync";
        run(initdb.arg("-D").arg(&staging).args(flags.split(' ')))
    };
    let published = build().and_then(|_| publish(&staging, &path, install));
    let _ = fs::remove_dir_all(&staging); // gone already if it was renamed
    published.map(|()| path)
}

/// Renames `staging` to `path`, or, if someone beat us to it, uses theirs.
fn publish(staging: &Path, path: &Path, install: &Install) -> Result<(), LocalError> {
    match fs::rename(staging, path) {
        Ok(()) => info!(path = %path.display(), "created PostgreSQL template data directory"),
        Err(_) if is_complete(path, install)? => info!("another process made the template"),
        Err(e) => return Err(io_err("rename", staging)(e)),
    }
    Ok(())
}

/// Whether `path` holds a finished template; an error if it is not ours.
fn is_complete(path: &Path, install: &Install) -> Result<bool, LocalError> {
    let meta = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        other => other.map_err(io_err("stat", path))?,
    };
    if !meta.is_dir() || meta.uid() != install.owner_uid() {
        let problem = format!(
            "not a directory owned by uid {}; remove it",
            install.owner_uid()
        );
        return Err(LocalError::Template(path.display().to_string(), problem));
    }
    let version = fs::read_to_string(path.join("PG_VERSION")).unwrap_or_default();
    Ok(version.trim() == install.major && path.join("global/pg_control").is_file())
}
