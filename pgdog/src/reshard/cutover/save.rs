//! `cutover_save_config`: the switched configuration written back to the files.

use std::path::Path;

use pgdog_config::ConfigAndUsers;
use tracing::{info, warn};

/// Writes the switched configuration to both files, keeping the previous ones as
/// `*.before-cutover`; logs (and leaves the files as they were) when it cannot.
pub fn save(config: &ConfigAndUsers) {
    let write = |path: &Path, text: Result<String, toml::ser::Error>| -> Result<(), String> {
        let text = text.map_err(|e| e.to_string())?;
        let mut backup = path.as_os_str().to_owned();
        backup.push(".before-cutover");
        std::fs::copy(path, &backup).map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    for (path, text) in [
        (&config.config_path, toml::to_string(&config.config)),
        (&config.users_path, toml::to_string(&config.users)),
    ] {
        match write(path, text) {
            Ok(()) => info!("cutover: wrote {}", path.display()),
            Err(e) => warn!("cutover: could not save the configuration: {e}"),
        }
    }
}
