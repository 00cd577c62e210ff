//! The admin commands and their parser. One enum holds every command; later commands (the
//! resharding tasks) are added here and in [`COMMANDS`], nowhere else.

use crate::lexer::{tokens, Token};

/// What `SHOW` can list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// Pools and their connection counts.
    Pools,
    /// Connected clients.
    Clients,
    /// Server connections.
    Servers,
    /// Totals and averages per pool.
    Stats,
    /// Configuration values.
    Config,
    /// Configured databases.
    Databases,
    /// Configured users.
    Users,
    /// Counts of internal lists.
    Lists,
    /// Banned pools.
    Bans,
    /// pgdog's version.
    Version,
    /// Background tasks (resharding steps) and their status.
    Tasks,
    /// Schema-sync statements per shard.
    SchemaSync,
    /// Table copies of data-copy tasks.
    TableCopies,
    /// Replication streams of this process: positions, lag and rates.
    Replication,
    /// Logical replication slots on the configured databases' primaries.
    ReplicationSlots,
    /// Cutovers of this process: their steps and the pause each caused.
    Cutover,
}

impl Show {
    const ALL: [(&'static str, Show); 16] = [
        ("pools", Show::Pools),
        ("clients", Show::Clients),
        ("servers", Show::Servers),
        ("stats", Show::Stats),
        ("config", Show::Config),
        ("databases", Show::Databases),
        ("users", Show::Users),
        ("lists", Show::Lists),
        ("bans", Show::Bans),
        ("version", Show::Version),
        ("tasks", Show::Tasks),
        ("schema_sync", Show::SchemaSync),
        ("table_copies", Show::TableCopies),
        ("replication", Show::Replication),
        ("replication_slots", Show::ReplicationSlots),
        ("cutover", Show::Cutover),
    ];
}

/// One admin command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `SHOW <what>`.
    Show(Show),
    /// `RELOAD`: re-read the config files.
    Reload,
    /// `PAUSE [db]`: hold new queries after in-flight transactions finish.
    Pause(Option<String>),
    /// `RESUME [db]`.
    Resume(Option<String>),
    /// `RECONNECT`: replace every server connection.
    Reconnect,
    /// `BAN [pool_id]`.
    Ban(Option<u64>),
    /// `UNBAN [pool_id]`.
    Unban(Option<u64>),
    /// `SET <setting> TO <value>`.
    Set {
        /// The setting's name (lowercase unless quoted).
        name: String,
        /// Its new value, as text.
        value: String,
    },
    /// `SHUTDOWN`.
    Shutdown,
    /// `STOP_TASK <id>`: cancel a background task.
    StopTask(u64),
    /// `SCHEMA_SYNC <pre|post|cutover> <source> <destination> <publication> [options]`.
    SchemaSync(SchemaSync),
    /// `COPY_DATA <source> <destination> <publication> [slot]`: copy, then stream changes.
    CopyData(CopyData),
    /// `REPLICATE <source> <destination> <publication> [slot]`: stream changes only (the
    /// copy is done); same arguments as `COPY_DATA`.
    Replicate(CopyData),
    /// `DROP_SLOT <slot>`: drop a logical replication slot on the configured primaries.
    DropSlot(String),
    /// `CUTOVER [task_id]`: switch the clients of a stream's source to its destination (the
    /// stream of task `task_id`, or the only running one).
    Cutover(Option<u64>),
    /// `RESHARD <source> <destination> <publication> [slot]`: the whole move, unattended
    /// (pre-flight, schema, copy, streaming, then cutover once the lag is small).
    Reshard(CopyData),
    /// `VERIFY <source> <destination> [table]`: compare row counts and checksums per table.
    Verify(Verify),
    /// `SYNC_SCHEMA <task_id> [SKIP_INDEXES]`: compare the source and destination schema of a
    /// stream's tables and apply what differs.
    SyncSchema {
        /// The stream's task.
        task_id: u64,
        /// Also create and drop indexes (not with `SKIP_INDEXES`).
        indexes: bool,
    },
    /// `PAUSE_REPLICATION <task_id>`: stop applying changes; the slot keeps its place.
    PauseReplication(u64),
    /// `RESUME_REPLICATION <task_id>`: continue a paused stream from where it stopped.
    ResumeReplication(u64),
    /// `RESYNC_TABLE <task_id> <table>`: copy one table again while the others keep streaming.
    ResyncTable {
        /// The stream's task.
        task_id: u64,
        /// `name` or `schema.name`.
        table: String,
    },
}

/// `VERIFY`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verify {
    /// Source database.
    pub from: String,
    /// Destination database.
    pub to: String,
    /// One table (`name` or `schema.name`), or every table both have.
    pub table: Option<String>,
}

/// The arguments of `COPY_DATA` and `REPLICATE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyData {
    /// Source database.
    pub from: String,
    /// Destination database.
    pub to: String,
    /// Publication on the source.
    pub publication: String,
    /// Replication slot (default: pgdog_<publication>).
    pub slot: Option<String>,
}

/// A schema-sync phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPhase {
    /// Before the data copy.
    Pre,
    /// After the data copy.
    Post,
    /// At the switch.
    Cutover,
}

/// `SCHEMA_SYNC`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaSync {
    /// Which phase.
    pub phase: SyncPhase,
    /// Source database.
    pub from: String,
    /// Destination database.
    pub to: String,
    /// Publication on the source.
    pub publication: String,
    /// `DRY_RUN`: record the SQL, change nothing.
    pub dry_run: bool,
    /// `IGNORE_ERRORS`: go on after failed statements.
    pub ignore_errors: bool,
    /// `FORCE`: go on despite pre-flight errors.
    pub force: bool,
}

/// Every command's syntax, for help and for suggesting the closest one.
pub const COMMANDS: &[&str] = &[
    "SHOW POOLS",
    "SHOW CLIENTS",
    "SHOW SERVERS",
    "SHOW STATS",
    "SHOW CONFIG",
    "SHOW DATABASES",
    "SHOW USERS",
    "SHOW LISTS",
    "SHOW BANS",
    "SHOW VERSION",
    "SHOW TASKS",
    "SHOW SCHEMA_SYNC",
    "SHOW TABLE_COPIES",
    "SHOW REPLICATION",
    "SHOW REPLICATION_SLOTS",
    "STOP_TASK <task_id>",
    "SCHEMA_SYNC <pre|post|cutover> <source> <destination> <publication> [DRY_RUN] [IGNORE_ERRORS] [FORCE]",
    "COPY_DATA <source> <destination> <publication> [slot]",
    "REPLICATE <source> <destination> <publication> [slot]",
    "DROP_SLOT <slot>",
    "CUTOVER [task_id]",
    "SHOW CUTOVER",
    "RESHARD <source> <destination> <publication> [slot]",
    "VERIFY <source> <destination> [table]",
    "SYNC_SCHEMA <task_id> [SKIP_INDEXES]",
    "PAUSE_REPLICATION <task_id>",
    "RESUME_REPLICATION <task_id>",
    "RESYNC_TABLE <task_id> <table>",
    "RELOAD",
    "PAUSE [database]",
    "RESUME [database]",
    "RECONNECT",
    "BAN [pool_id]",
    "UNBAN [pool_id]",
    "SET <setting> TO <value>",
    "SHUTDOWN",
];

/// A command that could not be parsed: the message, and the closest valid command as a hint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// What is wrong.
    pub message: String,
    /// "Did you mean ...?" with the closest valid command.
    pub hint: String,
}

/// Parses one or more commands separated by `;`. Empty statements are skipped.
pub fn parse(text: &str) -> Result<Vec<Command>, ParseError> {
    let tokens = tokens(text).map_err(|e| error(e, text))?;
    tokens
        .split(|t| *t == Token::Semicolon)
        .filter(|statement| !statement.is_empty())
        .map(|statement| parse_statement(statement, text))
        .collect()
}

fn parse_statement(tokens: &[Token], text: &str) -> Result<Command, ParseError> {
    let word = |i: usize| match tokens.get(i) {
        Some(Token::Word(w)) => Some(w.as_str()),
        _ => None,
    };
    let name = |i: usize| match tokens.get(i) {
        Some(Token::Word(w)) | Some(Token::Quoted(w)) => Some(w.clone()),
        _ => None,
    };
    let number = |i: usize, what: &str| -> Result<Option<u64>, ParseError> {
        match tokens.get(i) {
            None => Ok(None),
            Some(Token::Word(w)) => w.parse().map(Some).map_err(|_| {
                error(
                    format!("{what} must be a pool id (a number), not \"{w}\""),
                    text,
                )
            }),
            Some(other) => Err(error(
                format!("{what} must be a pool id, not {other:?}"),
                text,
            )),
        }
    };
    let command = match word(0) {
        Some("show") => {
            let what = word(1).ok_or_else(|| error("SHOW needs what to show".into(), text))?;
            let show = Show::ALL
                .iter()
                .find(|(n, _)| *n == what)
                .map(|(_, s)| *s)
                .ok_or_else(|| {
                    error(
                        format!("unknown SHOW command \"SHOW {}\"", what.to_uppercase()),
                        text,
                    )
                })?;
            expect_end(tokens, 2, text)?;
            Command::Show(show)
        }
        Some("reload") => end(tokens, 1, text, Command::Reload)?,
        Some("reconnect") => end(tokens, 1, text, Command::Reconnect)?,
        Some("shutdown") => end(tokens, 1, text, Command::Shutdown)?,
        Some("pause") => end(tokens, 2, text, Command::Pause(name(1)))?,
        Some("resume") => end(tokens, 2, text, Command::Resume(name(1)))?,
        Some("ban") => end(tokens, 2, text, Command::Ban(number(1, "BAN")?))?,
        Some("unban") => end(tokens, 2, text, Command::Unban(number(1, "UNBAN")?))?,
        Some("stop_task") => {
            let id = task_id(tokens, text, "STOP_TASK", "SHOW TASKS")?;
            end(tokens, 2, text, Command::StopTask(id))?
        }
        Some("pause_replication") => {
            let id = task_id(tokens, text, "PAUSE_REPLICATION", "SHOW REPLICATION")?;
            end(tokens, 2, text, Command::PauseReplication(id))?
        }
        Some("resume_replication") => {
            let id = task_id(tokens, text, "RESUME_REPLICATION", "SHOW REPLICATION")?;
            end(tokens, 2, text, Command::ResumeReplication(id))?
        }
        Some("sync_schema") => {
            let id = task_id(tokens, text, "SYNC_SCHEMA", "SHOW REPLICATION")?;
            let indexes = match word(2) {
                None if tokens.len() == 2 => true,
                Some("skip_indexes") => false,
                _ => {
                    return Err(error(
                        "SYNC_SCHEMA takes <task_id> and optionally SKIP_INDEXES".into(),
                        text,
                    ))
                }
            };
            end(
                tokens,
                3,
                text,
                Command::SyncSchema {
                    task_id: id,
                    indexes,
                },
            )?
        }
        Some("resync_table") => {
            let id = task_id(tokens, text, "RESYNC_TABLE", "SHOW REPLICATION")?;
            let table = match tokens.get(2) {
                Some(Token::Word(w)) | Some(Token::Quoted(w)) | Some(Token::Literal(w)) => {
                    w.clone()
                }
                _ => return Err(error("RESYNC_TABLE needs <task_id> <table>".into(), text)),
            };
            end(tokens, 3, text, Command::ResyncTable { task_id: id, table })?
        }
        Some("schema_sync") => schema_sync(tokens, text)?,
        Some("copy_data") => Command::CopyData(stream_args(tokens, text, "COPY_DATA")?),
        Some("replicate") => Command::Replicate(stream_args(tokens, text, "REPLICATE")?),
        Some("reshard") => Command::Reshard(stream_args(tokens, text, "RESHARD")?),
        Some("verify") => verify(tokens, text)?,
        Some("cutover") => match tokens.get(1) {
            None => Command::Cutover(None),
            Some(Token::Word(w)) => match w.parse() {
                Ok(id) => end(tokens, 2, text, Command::Cutover(Some(id)))?,
                Err(_) => {
                    return Err(error(
                        format!("CUTOVER takes the task id of a stream (a number), not \"{w}\""),
                        text,
                    ))
                }
            },
            Some(other) => {
                return Err(error(
                    format!(
                    "CUTOVER takes the task id of a stream (see SHOW REPLICATION), not {other:?}"
                ),
                    text,
                ))
            }
        },
        Some("drop_slot") => match tokens.get(1) {
            Some(Token::Word(slot)) | Some(Token::Quoted(slot)) | Some(Token::Literal(slot)) => {
                end(tokens, 2, text, Command::DropSlot(slot.clone()))?
            }
            _ => {
                return Err(error(
                    "DROP_SLOT needs a replication slot name (see SHOW REPLICATION_SLOTS)".into(),
                    text,
                ))
            }
        },
        Some("set") => {
            let setting = name(1).ok_or_else(|| error("SET needs a setting name".into(), text))?;
            match (tokens.get(2), tokens.get(3)) {
                (Some(Token::Word(to)), Some(value)) if to == "to" => {
                    set(setting, value, tokens, text)?
                }
                (Some(Token::Equals), Some(value)) => set(setting, value, tokens, text)?,
                _ => return Err(error(format!("SET {setting} needs TO <value>"), text)),
            }
        }
        _ => return Err(error("unknown admin command".into(), text)),
    };
    Ok(command)
}

/// The task id after `command` (listed by `listing`).
fn task_id(tokens: &[Token], text: &str, command: &str, listing: &str) -> Result<u64, ParseError> {
    match tokens.get(1) {
        Some(Token::Word(w)) => w.parse().map_err(|_| {
            error(
                format!("{command} needs a task id (a number), not \"{w}\""),
                text,
            )
        }),
        _ => Err(error(
            format!("{command} needs a task id (see {listing})"),
            text,
        )),
    }
}

fn schema_sync(tokens: &[Token], text: &str) -> Result<Command, ParseError> {
    let usage = "SCHEMA_SYNC needs <pre|post|cutover> <source> <destination> <publication>";
    let phase = match tokens.get(1) {
        Some(Token::Word(w)) if w == "pre" => SyncPhase::Pre,
        Some(Token::Word(w)) if w == "post" => SyncPhase::Post,
        Some(Token::Word(w)) if w == "cutover" => SyncPhase::Cutover,
        Some(Token::Word(w)) => {
            return Err(error(
                format!("SCHEMA_SYNC phase must be pre, post or cutover, not \"{w}\""),
                text,
            ))
        }
        _ => return Err(error(usage.into(), text)),
    };
    let name = |i: usize| match tokens.get(i) {
        Some(Token::Word(w)) | Some(Token::Quoted(w)) | Some(Token::Literal(w)) => Ok(w.clone()),
        _ => Err(error(usage.into(), text)),
    };
    let mut command = SchemaSync {
        phase,
        from: name(2)?,
        to: name(3)?,
        publication: name(4)?,
        dry_run: false,
        ignore_errors: false,
        force: false,
    };
    for token in &tokens[5..] {
        match token {
            Token::Word(w) if w == "dry_run" => command.dry_run = true,
            Token::Word(w) if w == "ignore_errors" => command.ignore_errors = true,
            Token::Word(w) if w == "force" => command.force = true,
            other => {
                return Err(error(
                    format!("unknown SCHEMA_SYNC option {other:?}; options are DRY_RUN, IGNORE_ERRORS and FORCE"),
                    text,
                ))
            }
        }
    }
    Ok(Command::SchemaSync(command))
}

/// `VERIFY <source> <destination> [table]`; the table may be `schema.name` (each part quoted
/// or not) or a quoted identifier.
fn verify(tokens: &[Token], text: &str) -> Result<Command, ParseError> {
    let usage = "VERIFY needs <source> <destination> [table]";
    let name = |i: usize| match tokens.get(i) {
        Some(Token::Word(w)) | Some(Token::Quoted(w)) | Some(Token::Literal(w)) => Some(w.clone()),
        _ => None,
    };
    let (Some(from), Some(to)) = (name(1), name(2)) else {
        return Err(error(usage.into(), text));
    };
    let table = match tokens.get(3) {
        None => None,
        Some(_) => Some(name(3).ok_or_else(|| error(usage.into(), text))?),
    };
    expect_end(tokens, 4, text)?;
    Ok(Command::Verify(Verify { from, to, table }))
}

/// `<source> <destination> <publication> [slot]` after `COPY_DATA` or `REPLICATE` (`command`).
fn stream_args(tokens: &[Token], text: &str, command: &str) -> Result<CopyData, ParseError> {
    let usage = format!("{command} needs <source> <destination> <publication> [slot]");
    let name = |i: usize| match tokens.get(i) {
        Some(Token::Word(w)) | Some(Token::Quoted(w)) | Some(Token::Literal(w)) => Some(w.clone()),
        _ => None,
    };
    let (Some(from), Some(to), Some(publication)) = (name(1), name(2), name(3)) else {
        return Err(error(usage, text));
    };
    let slot = name(4);
    expect_end(tokens, 5, text)?;
    Ok(CopyData {
        from,
        to,
        publication,
        slot,
    })
}

fn set(name: String, value: &Token, tokens: &[Token], text: &str) -> Result<Command, ParseError> {
    let value = match value {
        Token::Word(v) | Token::Quoted(v) | Token::Literal(v) => v.clone(),
        _ => return Err(error(format!("SET {name} needs a value"), text)),
    };
    end(tokens, 4, text, Command::Set { name, value })
}

fn end(tokens: &[Token], len: usize, text: &str, command: Command) -> Result<Command, ParseError> {
    expect_end(tokens, len, text)?;
    Ok(command)
}

fn expect_end(tokens: &[Token], len: usize, text: &str) -> Result<(), ParseError> {
    if tokens.len() > len {
        return Err(error(
            format!("unexpected {:?} at the end of the command", tokens[len]),
            text,
        ));
    }
    Ok(())
}

/// An error whose hint names the valid command closest to `text`.
fn error(message: String, text: &str) -> ParseError {
    let typed = text.trim().to_uppercase();
    let closest = COMMANDS
        .iter()
        .min_by_key(|c| {
            let c = c.split(['[', '<']).next().unwrap_or(c).trim();
            let prefix: String = typed.chars().take(c.chars().count()).collect();
            edit_distance(&prefix, c)
        })
        .unwrap_or(&"SHOW POOLS");
    ParseError {
        message,
        hint: format!(
            "did you mean \"{closest}\"? Valid commands: {}",
            COMMANDS.join(", ")
        ),
    }
}

/// Levenshtein distance between two strings (also used to suggest setting names).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_control_commands() {
        assert_eq!(
            parse("PAUSE_REPLICATION 3; resume_replication 3").unwrap(),
            vec![Command::PauseReplication(3), Command::ResumeReplication(3)]
        );
        assert_eq!(
            parse("SYNC_SCHEMA 4; sync_schema 4 skip_indexes").unwrap(),
            vec![
                Command::SyncSchema {
                    task_id: 4,
                    indexes: true
                },
                Command::SyncSchema {
                    task_id: 4,
                    indexes: false
                }
            ]
        );
        assert_eq!(
            parse("RESYNC_TABLE 5 sales.orders").unwrap(),
            vec![Command::ResyncTable {
                task_id: 5,
                table: "sales.orders".into()
            }]
        );
        for bad in [
            "PAUSE_REPLICATION",
            "PAUSE_REPLICATION x",
            "RESUME_REPLICATION 1 2",
            "SYNC_SCHEMA 1 indexes",
            "RESYNC_TABLE 1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tasks_commands() {
        assert_eq!(
            parse("SHOW TASKS").unwrap(),
            vec![Command::Show(Show::Tasks)]
        );
        assert_eq!(parse("stop_task 12").unwrap(), vec![Command::StopTask(12)]);
        assert_eq!(
            parse("CUTOVER; cutover 7").unwrap(),
            vec![Command::Cutover(None), Command::Cutover(Some(7))]
        );
        for bad in ["CUTOVER x", "CUTOVER 1 2", "CUTOVER 'x'"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse("SHOW SCHEMA_SYNC").unwrap(),
            vec![Command::Show(Show::SchemaSync)]
        );
        assert_eq!(
            parse(r#"SCHEMA_SYNC post prod "Shards" pub FORCE dry_run"#).unwrap(),
            vec![Command::SchemaSync(SchemaSync {
                phase: SyncPhase::Post,
                from: "prod".into(),
                to: "Shards".into(),
                publication: "pub".into(),
                dry_run: true,
                ignore_errors: false,
                force: true,
            })]
        );
        assert_eq!(
            parse("COPY_DATA prod shards pub my_slot; SHOW TABLE_COPIES").unwrap(),
            vec![
                Command::CopyData(CopyData {
                    from: "prod".into(),
                    to: "shards".into(),
                    publication: "pub".into(),
                    slot: Some("my_slot".into()),
                }),
                Command::Show(Show::TableCopies)
            ]
        );
        let e = parse("COPY_DATA prod shards").unwrap_err();
        assert!(e.message.contains("<publication>"), "{}", e.message);
        let e = parse("SCHEMA_SYNC later a b c").unwrap_err();
        assert!(e.message.contains("pre, post or cutover"), "{}", e.message);
        let e = parse("SCHEMA_SYNC pre a b").unwrap_err();
        assert!(e.message.contains("<publication>"), "{}", e.message);
        let e = parse("SCHEMA_SYNC pre a b c quickly").unwrap_err();
        assert!(e.message.contains("DRY_RUN"), "{}", e.message);
        for bad in ["STOP_TASK", "STOP_TASK abc", "STOP_TASK 1 2"] {
            let err = parse(bad).unwrap_err();
            assert!(err.hint.contains("STOP_TASK <task_id>"), "{bad}: {err:?}");
        }
    }

    #[test]
    fn replication_commands() {
        assert_eq!(
            parse("SHOW REPLICATION; show replication_slots").unwrap(),
            vec![
                Command::Show(Show::Replication),
                Command::Show(Show::ReplicationSlots)
            ]
        );
        assert_eq!(
            parse(r#"REPLICATE prod "Shards" pub"#).unwrap(),
            vec![Command::Replicate(CopyData {
                from: "prod".into(),
                to: "Shards".into(),
                publication: "pub".into(),
                slot: None,
            })]
        );
        assert_eq!(
            parse("replicate prod shards pub 'my_slot'").unwrap(),
            vec![Command::Replicate(CopyData {
                from: "prod".into(),
                to: "shards".into(),
                publication: "pub".into(),
                slot: Some("my_slot".into()),
            })]
        );
        assert_eq!(
            parse("DROP_SLOT pgdog_pub; drop_slot \"Odd\"").unwrap(),
            vec![
                Command::DropSlot("pgdog_pub".into()),
                Command::DropSlot("Odd".into())
            ]
        );

        for missing in ["REPLICATE", "REPLICATE prod", "REPLICATE prod shards"] {
            let e = parse(missing).unwrap_err();
            assert_eq!(
                e.message, "REPLICATE needs <source> <destination> <publication> [slot]",
                "{missing}"
            );
            assert!(e.hint.starts_with("did you mean \"REPLICATE"), "{e:?}");
        }
        let e = parse("REPLICATE prod shards pub slot extra").unwrap_err();
        assert!(e.message.contains("\"extra\""), "{}", e.message);
        assert!(
            e.message.contains("at the end of the command"),
            "{}",
            e.message
        );
        let e = parse("COPY_DATA prod shards pub slot extra").unwrap_err();
        assert!(e.message.contains("\"extra\""), "{}", e.message);
        let e = parse("REPLICATE prod = pub").unwrap_err();
        assert!(e.message.contains("REPLICATE needs"), "{}", e.message);

        for missing in ["DROP_SLOT", "DROP_SLOT ;", "DROP_SLOT = x"] {
            let e = parse(missing).unwrap_err();
            assert!(
                e.message
                    .contains("DROP_SLOT needs a replication slot name"),
                "{missing}: {}",
                e.message
            );
            assert!(
                e.hint.starts_with("did you mean \"DROP_SLOT <slot>\""),
                "{e:?}"
            );
        }
        let e = parse("DROP_SLOT a b").unwrap_err();
        assert!(e.message.contains("\"b\""), "{}", e.message);

        let e = parse("SHOW REPLICATIONS").unwrap_err();
        assert!(e.message.contains("SHOW REPLICATIONS"), "{}", e.message);
        let e = parse("SHOW REPLICATION_SLOTS now").unwrap_err();
        assert!(e.message.contains("\"now\""), "{}", e.message);
        let e = parse("replicat prod shards pub").unwrap_err();
        assert!(e.hint.starts_with("did you mean \"REPLICATE"), "{e:?}");
        for command in [
            "SHOW REPLICATION",
            "SHOW REPLICATION_SLOTS",
            "REPLICATE <source> <destination> <publication> [slot]",
            "DROP_SLOT <slot>",
        ] {
            assert!(COMMANDS.contains(&command), "{command}");
        }
    }

    #[test]
    fn move_commands() {
        assert_eq!(
            parse("RESHARD prod shards pub; show cutover").unwrap(),
            vec![
                Command::Reshard(CopyData {
                    from: "prod".into(),
                    to: "shards".into(),
                    publication: "pub".into(),
                    slot: None,
                }),
                Command::Show(Show::Cutover)
            ]
        );
        assert_eq!(
            parse("verify prod shards; VERIFY prod shards \"Sales.orders\"").unwrap(),
            vec![
                Command::Verify(Verify {
                    from: "prod".into(),
                    to: "shards".into(),
                    table: None,
                }),
                Command::Verify(Verify {
                    from: "prod".into(),
                    to: "shards".into(),
                    table: Some("Sales.orders".into()),
                })
            ]
        );
        for bad in ["VERIFY", "VERIFY prod", "VERIFY prod shards ="] {
            let e = parse(bad).unwrap_err();
            assert_eq!(
                e.message, "VERIFY needs <source> <destination> [table]",
                "{bad}"
            );
        }
        let e = parse("VERIFY a b c d").unwrap_err();
        assert!(e.message.contains("\"d\""), "{}", e.message);
        let e = parse("RESHARD prod shards").unwrap_err();
        assert!(e.message.starts_with("RESHARD needs"), "{}", e.message);
    }

    #[test]
    fn parses_every_command() {
        assert_eq!(
            parse("show pools").unwrap(),
            vec![Command::Show(Show::Pools)]
        );
        assert_eq!(
            parse("SHOW VERSION;").unwrap(),
            vec![Command::Show(Show::Version)]
        );
        assert_eq!(
            parse("PAUSE \"MixedCase\"; resume; RELOAD; reconnect; shutdown").unwrap(),
            vec![
                Command::Pause(Some("MixedCase".into())),
                Command::Resume(None),
                Command::Reload,
                Command::Reconnect,
                Command::Shutdown
            ]
        );
        assert_eq!(
            parse("pause app").unwrap(),
            vec![Command::Pause(Some("app".into()))]
        );
        assert_eq!(
            parse("BAN 3; UNBAN").unwrap(),
            vec![Command::Ban(Some(3)), Command::Unban(None)]
        );
        assert_eq!(
            parse("SET query_timeout TO 5000; set checkout_timeout = '100'").unwrap(),
            vec![
                Command::Set {
                    name: "query_timeout".into(),
                    value: "5000".into()
                },
                Command::Set {
                    name: "checkout_timeout".into(),
                    value: "100".into()
                },
            ]
        );
        assert_eq!(parse(" ; ").unwrap(), vec![]);
    }

    #[test]
    fn errors_hint_the_closest_command() {
        let e = parse("SHOW POLS").unwrap_err();
        assert!(e.message.contains("SHOW POLS"), "{e:?}");
        assert!(e.hint.starts_with("did you mean \"SHOW POOLS\""), "{e:?}");
        let e = parse("relod").unwrap_err();
        assert!(e.hint.starts_with("did you mean \"RELOAD\""), "{e:?}");
        assert!(parse("BAN abc").is_err());
        assert!(parse("SHOW POOLS extra").is_err());
        assert!(parse("SET x").is_err());
        assert!(parse("pause \"unterminated").is_err());
    }
}
