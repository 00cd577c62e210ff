//! What the machine and the binaries are, for the report header.

use super::*;

/// The pgdog binary: `$PGDOG_BIN`, else `pgdog` beside this binary (both in target/release).
/// Sets `PGDOG_BIN` so [`PgdogProcess`] uses it rather than building a debug one.
pub(crate) fn pgdog_binary() -> Result<PathBuf, String> {
    let path = match std::env::var_os("PGDOG_BIN").filter(|p| !p.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot locate this binary to find pgdog beside it: {e}"))?
            .with_file_name("pgdog"),
    };
    if !path.is_file() {
        return Err(format!(
            "no pgdog binary at {}; build it (cargo build --release -p pgdog) or set PGDOG_BIN",
            path.display()
        ));
    }
    std::env::set_var("PGDOG_BIN", &path);
    Ok(path)
}

pub(crate) fn first_line(program: &Path, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("unknown")
            .trim()
            .to_string(),
        Err(_) => "unknown".into(),
    }
}

/// The 1, 5 and 15-minute load averages, from /proc/loadavg.
pub(crate) fn load_average() -> String {
    let text = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let fields: Vec<&str> = text.split_whitespace().take(3).collect();
    match fields.len() {
        3 => fields.join(" "),
        _ => "unknown".into(),
    }
}

pub(crate) fn cpu_model() -> String {
    let text = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    text.lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The workspace root (the parent of this crate's directory).
pub(crate) fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

pub(crate) fn git_describe() -> String {
    let root = workspace_root();
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["describe", "--always", "--dirty"])
        .output();
    match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => "unknown".into(),
    }
}
