//! `SET <setting> TO <value>`: changing `[general]` settings at runtime, and the list of
//! settings `SHOW CONFIG` prints. A change goes through the same validation and atomic swap as
//! a reload; it lasts until the next reload from the files.

use std::sync::Arc;

use pgdog_admin::edit_distance;
use pgdog_config::{ConfigAndUsers, General};
use serde::Deserialize;

use crate::net::{sqlstate, ErrorResponse};
use crate::state::PoolerState;

/// Settings that only take effect at startup.
const RESTART_ONLY: &[&str] = &["host", "port", "workers", "openmetrics_port"];

/// Whether `SET` can change this setting without a restart.
pub fn is_tunable(name: &str) -> bool {
    !RESTART_ONLY.contains(&name)
}

/// Every `[general]` setting and its current value as text (unset ones as an empty string).
pub fn general_values(general: &General) -> Vec<(String, String)> {
    let table = match toml::Value::try_from(general) {
        Ok(toml::Value::Table(table)) => table,
        _ => toml::map::Map::new(),
    };
    General::keys()
        .into_iter()
        .map(|key| {
            let value = match table.get(&key) {
                Some(toml::Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            (key, value)
        })
        .collect()
}

/// Applies `SET name TO value`: validated like the config files, then swapped in atomically.
/// On any error nothing changes.
pub fn apply(state: &Arc<PoolerState>, name: &str, value: &str) -> Result<(), ErrorResponse> {
    let keys = General::keys();
    if !keys.iter().any(|k| k == name) {
        let closest = closest(name, &keys);
        return Err(ErrorResponse::error(
            sqlstate::UNDEFINED_OBJECT,
            format!("unrecognized setting \"{name}\""),
        )
        .hint(match closest {
            Some(c) => format!("did you mean \"{c}\"? SHOW CONFIG lists every setting"),
            None => "SHOW CONFIG lists every setting".to_string(),
        }));
    }
    if !is_tunable(name) {
        return Err(ErrorResponse::error(
            sqlstate::CANT_CHANGE_RUNTIME_PARAM,
            format!("setting \"{name}\" cannot be changed while pgdog runs"),
        )
        .hint("change it in pgdog.toml and restart pgdog"));
    }
    let current = state.databases().config().clone();
    let mut config: ConfigAndUsers = (*current).clone();
    let mut table = match toml::Value::try_from(&config.config.general) {
        Ok(toml::Value::Table(table)) => table,
        _ => {
            return Err(ErrorResponse::error(
                sqlstate::INTERNAL_ERROR,
                "cannot read the current settings",
            ))
        }
    };
    let new_value = typed_value(table.get(name), value);
    table.insert(name.to_string(), new_value);
    config.config.general = General::deserialize(toml::Value::Table(table)).map_err(|e| {
        ErrorResponse::error(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("invalid value for setting \"{name}\": {}", e.message()),
        )
    })?;
    config.validate().map_err(|e| {
        ErrorResponse::error(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("invalid value for setting \"{name}\": {e}"),
        )
    })?;
    state.reload(config).map_err(|e| {
        ErrorResponse::error(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("cannot apply setting \"{name}\": {e}"),
        )
    })?;
    tracing::info!("SET {name} TO {value}");
    Ok(())
}

/// The text `value` as the TOML type the setting currently has (numbers and booleans parsed;
/// everything else a string, which serde then checks against the setting's type).
fn typed_value(current: Option<&toml::Value>, value: &str) -> toml::Value {
    let number = || value.parse::<i64>().ok().map(toml::Value::Integer);
    let boolean = || match value.to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "1" => Some(toml::Value::Boolean(true)),
        "false" | "off" | "no" | "0" => Some(toml::Value::Boolean(false)),
        _ => None,
    };
    let parsed = match current {
        Some(toml::Value::Integer(_)) => number(),
        Some(toml::Value::Boolean(_)) => boolean(),
        Some(toml::Value::String(_)) => None,
        // Unset optional settings: a number if it looks like one.
        _ => number(),
    };
    parsed.unwrap_or_else(|| toml::Value::String(value.to_string()))
}

/// The known name closest to `name` by edit distance, if reasonably close.
fn closest<'a>(name: &str, names: &'a [String]) -> Option<&'a str> {
    names
        .iter()
        .map(|n| (edit_distance(name, n), n))
        .filter(|(d, n)| *d <= n.len() / 2 + 1)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_take_the_settings_type() {
        let int = toml::Value::Integer(5);
        assert_eq!(typed_value(Some(&int), "10"), toml::Value::Integer(10));
        assert_eq!(
            typed_value(Some(&int), "ten"),
            toml::Value::String("ten".into())
        );
        let text = toml::Value::String("random".into());
        assert_eq!(
            typed_value(Some(&text), "round_robin"),
            toml::Value::String("round_robin".into())
        );
        assert_eq!(typed_value(None, "9090"), toml::Value::Integer(9090));
    }

    #[test]
    fn closest_setting_is_suggested() {
        let keys = General::keys();
        assert_eq!(closest("checkout_timout", &keys), Some("checkout_timeout"));
        assert_eq!(closest("zzzzzzzzzzzzzzzzzzzzzzzz", &keys), None);
        assert!(!is_tunable("port"));
        assert!(is_tunable("ban_timeout"));
    }

    #[test]
    fn every_setting_has_a_value_row() {
        let values = general_values(&General::default());
        assert_eq!(values.len(), General::keys().len());
        assert!(values.contains(&("port".to_string(), "6432".to_string())));
        assert!(values.contains(&("pooler_mode".to_string(), "transaction".to_string())));
    }
}
