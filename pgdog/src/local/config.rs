//! Per-cluster plumbing: unique directory names, free ports, quoting, and the
//! postgresql.conf / pg_hba.conf contents written into each cluster's copy.

use std::collections::{hash_map::RandomState, HashSet};
use std::fs::{self, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{ErrorKind, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use super::error::io_err;
use super::{HostAuth, LocalCluster, LocalError};

/// Ports handed out in this process and not released: a stopped cluster keeps
/// its port for `restart` although nothing listens on it meanwhile.
static RESERVED: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A random number, good enough for unique names (not for cryptography).
pub(super) fn random_u32() -> u32 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_nanos()));
    hasher.finish() as u32
}

/// Creates a fresh `<temp_dir>/pgdog-pg-<pid>-<counter>-<random>`.
pub(super) fn unique_dir() -> Result<PathBuf, LocalError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("pgdog-pg-{}-{n}-{:08x}", std::process::id(), random_u32());
        let path = std::env::temp_dir().join(name);
        match fs::create_dir(&path) {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            created => {
                return created
                    .map(|()| path.clone())
                    .map_err(io_err("create", &path))
            }
        }
    }
}

/// A port on 127.0.0.1 that was free just now and is not reserved by us.
pub(super) fn reserve_port() -> Result<u16, LocalError> {
    for _ in 0..100 {
        let bound = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr());
        let port = bound
            .map_err(io_err("bind", Path::new("127.0.0.1:0")))?
            .port();
        let mut reserved = RESERVED.lock().unwrap_or_else(PoisonError::into_inner);
        if reserved.get_or_insert_with(HashSet::new).insert(port) {
            return Ok(port);
        }
    }
    Err(LocalError::Io(
        "find a free port".into(),
        ErrorKind::AddrInUse.into(),
    ))
}

/// Gives back a port from [`reserve_port`].
pub(super) fn release_port(port: u16) {
    let mut reserved = RESERVED.lock().unwrap_or_else(PoisonError::into_inner);
    reserved.get_or_insert_with(HashSet::new).remove(&port);
}

/// `'value'`, escaped for postgresql.conf, SQL `E''` strings and libpq.
pub(super) fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `"name"` as an SQL identifier.
pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Makes the copied postgresql.conf include the cluster's own settings file,
/// and rewrites pg_hba.conf: trust on the socket, the chosen method over TCP,
/// for normal and for replication connections alike (so pg_basebackup and
/// standbys of [`LocalCluster::start_replica`] connect like any client).
pub(super) fn configure(cluster: &LocalCluster) -> Result<(), LocalError> {
    let conf = cluster.data.join("postgresql.conf");
    let file = OpenOptions::new().append(true).open(&conf);
    let appended = file.and_then(|mut f| writeln!(f, "\ninclude = 'pgdog_local.conf'"));
    appended.map_err(io_err("append to", &conf))?;
    let method = cluster.options.host_auth.as_str();
    let hba = format!(
        "local all all trust\nlocal replication all trust\n\
         host all all 127.0.0.1/32 {method}\nhost replication all 127.0.0.1/32 {method}\n"
    );
    let path = cluster.data.join("pg_hba.conf");
    fs::write(&path, hba).map_err(io_err("write", &path))
}

/// Writes the cluster's settings (port, socket directory, WAL, replication,
/// options). A replica's copy of its primary's file is overwritten with its own.
pub(super) fn write_settings(cluster: &LocalCluster) -> Result<(), LocalError> {
    let (port, options) = (cluster.port, &cluster.options);
    let socket_dir = quote_literal(&cluster.root.to_string_lossy());
    let max = options.max_connections;
    let md5 = options.host_auth == HostAuth::Md5;
    let encryption = if md5 { "md5" } else { "scram-sha-256" };
    let mut text = format!(
        "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = {socket_dir}\n\
         wal_level = logical\nmax_wal_senders = 10\nmax_replication_slots = 10\n\
         hot_standby = on\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
         max_connections = {max}\nshared_buffers = 128MB\npassword_encryption = {encryption}\n"
    );
    // WAL kept for replicas that fall behind (there are no replication slots).
    let major: u32 = cluster.install.major.parse().unwrap_or(0);
    if major >= 13 {
        text += "wal_keep_size = '64MB'\n";
    }
    for (key, value) in &options.extra_settings {
        let valid = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'.';
        if key.is_empty() || !key.bytes().all(valid) {
            return Err(LocalError::InvalidOption(format!("setting name {key:?}")));
        }
        text += &format!("{key} = {}\n", quote_literal(value));
    }
    let path = cluster.data.join("pgdog_local.conf");
    fs::write(&path, text).map_err(io_err("write", &path))?;
    cluster.install.chown(&path)
}
