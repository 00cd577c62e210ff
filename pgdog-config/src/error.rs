//! [`ConfigError`] and its parts. Every message is one line naming the file,
//! the key and how to fix it.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Which of the two config files a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `pgdog.toml`: general settings, databases and optionally `[admin]`.
    Config,
    /// `users.toml`: users and optionally `[admin]`.
    Users,
}

impl FileKind {
    /// The example file to copy from, e.g. `pgdog.toml.example`.
    pub fn example(self) -> &'static str {
        match self {
            Self::Config => "pgdog.toml.example",
            Self::Users => "users.toml.example",
        }
    }

    /// The command-line flag that points pgdog at this file.
    pub fn flag(self) -> &'static str {
        match self {
            Self::Config => "--config",
            Self::Users => "--users",
        }
    }
}

/// Anything that stops pgdog from using its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A config file does not exist.
    #[error(
        "{}: file not found; create it (see {}) or pass {} <PATH>",
        path.display(),
        kind.example(),
        kind.flag()
    )]
    NotFound {
        /// The path that was looked up.
        path: PathBuf,
        /// Which file it was meant to be.
        kind: FileKind,
    },
    /// A config file exists but cannot be read.
    #[error(
        "{}: cannot read file: {error}; check that it is a readable file or pass {} <PATH>",
        path.display(),
        kind.flag()
    )]
    Read {
        /// The path that could not be read.
        path: PathBuf,
        /// Which file it was meant to be.
        kind: FileKind,
        /// The underlying I/O error (also shown in the message).
        error: io::Error,
    },
    /// A config file is not valid TOML or does not fit the expected keys and types.
    #[error("{0}")]
    Parse(ParseError),
    /// The files parsed but break one or more rules; every broken rule is listed.
    #[error("{}", ProblemList(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The validation problems, if this is [`ConfigError::Invalid`]; empty otherwise.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Invalid(problems) => problems,
            _ => &[],
        }
    }
}

/// A TOML syntax or type error, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The file that failed to parse.
    pub file: PathBuf,
    /// 1-based line of the error, when TOML reported a position.
    pub line: Option<usize>,
    /// 1-based column (in characters) of the error, when TOML reported a position.
    pub column: Option<usize>,
    /// Dotted key path such as `general.port` or `databases[1].role` (indexes
    /// count from 0), when it could be worked out.
    pub key: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
            if let Some(column) = self.column {
                write!(f, ", column {column}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// One broken validation rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file holding the offending key.
    pub file: PathBuf,
    /// Dotted key path such as `general.port` or `users[2].database`; indexes
    /// count `[[databases]]` / `[[users]]` entries from 0 in file order.
    pub key: String,
    /// The offending value as written in TOML (e.g. `"shop"` or `0`), if relevant.
    pub value: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.key)?;
        if let Some(value) = &self.value {
            write!(f, " = {value}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Displays problems one per line.
struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_names_path_and_fix() {
        let err = ConfigError::NotFound {
            path: "/etc/pgdog/pgdog.toml".into(),
            kind: FileKind::Config,
        };
        assert_eq!(
            err.to_string(),
            "/etc/pgdog/pgdog.toml: file not found; create it (see pgdog.toml.example) or pass --config <PATH>"
        );
    }

    #[test]
    fn problems_print_one_per_line() {
        let problem = |key: &str| Problem {
            file: "users.toml".into(),
            key: key.into(),
            value: Some("0".into()),
            message: "must be at least 1; raise it".into(),
        };
        let err = ConfigError::Invalid(vec![
            problem("users[0].pool_size"),
            problem("users[1].pool_size"),
        ]);
        assert_eq!(
            err.to_string(),
            "users.toml: users[0].pool_size = 0: must be at least 1; raise it\n\
             users.toml: users[1].pool_size = 0: must be at least 1; raise it"
        );
    }
}
