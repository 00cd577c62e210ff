//! The pgoutput decoder: turns the payload of each XLogData message of a logical replication
//! stream (protocol version 2, text or binary values, optionally streamed transactions) into a
//! [`Message`]. Owns the message types and the one piece of state the format needs: whether we
//! are between Stream Start and Stream Stop, where most messages carry a leading xid.
//! Two-phase commit messages are rejected as unsupported.

use bytes::Bytes;

use super::wal::Reader;
pub use super::wal::{DecodeError, Lsn, PgTimestamp};

/// One column value of a tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// 'n': SQL NULL.
    Null,
    /// 'u': an unchanged TOASTed value the server did not send.
    Unchanged,
    /// 't': the value in text format.
    Text(Bytes),
    /// 'b': the value in binary format.
    Binary(Bytes),
}

/// Replica identity setting of a relation ('d', 'n', 'f', 'i').
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaIdentity {
    /// 'd': the primary key.
    Default,
    /// 'n': nothing.
    Nothing,
    /// 'f': all columns.
    Full,
    /// 'i': a chosen unique index.
    Index,
}

/// A column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Part of the replica identity key (flags & 1).
    pub key: bool,
    /// Column name.
    pub name: String,
    /// Data type OID.
    pub type_oid: u32,
    /// Type modifier (atttypmod).
    pub type_modifier: i32,
}

/// A table as described by a Relation message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// The relation's OID on the source.
    pub oid: u32,
    /// Schema name; "" means pg_catalog (per the docs).
    pub schema: String,
    /// Table name.
    pub name: String,
    /// Its replica identity setting.
    pub replica_identity: ReplicaIdentity,
    /// Published columns, in tuple order.
    pub columns: Vec<Column>,
}

/// The old row an Update or Delete carries: 'K' (key columns only; other columns are Null) or 'O' (whole row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple {
    /// 'K': the replica identity key columns (others Null).
    Key(Vec<Value>),
    /// 'O': the whole old row (REPLICA IDENTITY FULL).
    Full(Vec<Value>),
}

/// One decoded pgoutput message. `xid` is `Some` only inside a streamed block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// 'B': a transaction starts.
    Begin {
        /// LSN of the commit record.
        final_lsn: Lsn,
        /// Commit time.
        commit_time: PgTimestamp,
        /// Transaction id.
        xid: u32,
    },
    /// 'C': the transaction commits.
    Commit {
        /// Flags (currently unused, 0).
        flags: u8,
        /// LSN of the commit record.
        commit_lsn: Lsn,
        /// End LSN of the transaction (confirm this once applied).
        end_lsn: Lsn,
        /// Commit time.
        commit_time: PgTimestamp,
    },
    /// 'O': the replication origin of the transaction.
    Origin {
        /// LSN of the commit on the origin server.
        commit_lsn: Lsn,
        /// Origin name.
        name: String,
    },
    /// 'R': describes a relation before its first change.
    Relation {
        /// Streamed transaction id.
        xid: Option<u32>,
        /// The relation.
        relation: Relation,
    },
    /// 'Y': describes a data type.
    Type {
        /// Streamed transaction id.
        xid: Option<u32>,
        /// Type OID.
        oid: u32,
        /// Schema name; "" means pg_catalog.
        schema: String,
        /// Type name.
        name: String,
    },
    /// 'I': a row inserted.
    Insert {
        /// Streamed transaction id.
        xid: Option<u32>,
        /// Relation OID.
        relation: u32,
        /// The new row.
        new: Vec<Value>,
    },
    /// 'U': a row updated.
    Update {
        /// Streamed transaction id.
        xid: Option<u32>,
        /// Relation OID.
        relation: u32,
        /// The old key or row, when the key changed or the identity is FULL.
        old: Option<OldTuple>,
        /// The new row.
        new: Vec<Value>,
    },
    /// 'D': a row deleted.
    Delete {
        /// Streamed transaction id.
        xid: Option<u32>,
        /// Relation OID.
        relation: u32,
        /// The old key or row.
        old: OldTuple,
    },
    /// 'T': tables truncated.
    Truncate {
        /// Streamed transaction id.
        xid: Option<u32>,
        /// TRUNCATE ... CASCADE (option bit 1).
        cascade: bool,
        /// TRUNCATE ... RESTART IDENTITY (option bit 2).
        restart_identity: bool,
        /// Relation OIDs.
        relations: Vec<u32>,
    },
    /// 'M': a logical decoding message (`pg_logical_emit_message`).
    LogicalMessage {
        /// Streamed transaction id.
        xid: Option<u32>,
        /// Part of the transaction (flags bit 1).
        transactional: bool,
        /// LSN of the message.
        lsn: Lsn,
        /// Its prefix.
        prefix: String,
        /// Its content.
        content: Bytes,
    },
    /// 'S': a block of a streamed (in-progress) transaction starts.
    StreamStart {
        /// Transaction id.
        xid: u32,
        /// First block of this transaction.
        first: bool,
    },
    /// 'E': the streamed block ends.
    StreamStop,
    /// 'c': a streamed transaction commits.
    StreamCommit {
        /// Transaction id.
        xid: u32,
        /// Flags (currently unused, 0).
        flags: u8,
        /// LSN of the commit record.
        commit_lsn: Lsn,
        /// End LSN of the transaction.
        end_lsn: Lsn,
        /// Commit time.
        commit_time: PgTimestamp,
    },
    /// 'A': a streamed transaction (or one of its subtransactions) aborts.
    StreamAbort {
        /// Top-level transaction id.
        xid: u32,
        /// The aborted subtransaction (equal to `xid` for the whole transaction).
        subxid: u32,
        /// Abort LSN (protocol v4, parallel streaming only).
        abort_lsn: Option<Lsn>,
        /// Abort time (protocol v4, parallel streaming only).
        abort_time: Option<PgTimestamp>,
    },
}

/// Decodes pgoutput messages. Inside a streamed block (between Stream Start and Stream Stop) the
/// Relation/Type/Insert/Update/Delete/Truncate/Message messages carry a leading xid; the decoder
/// tracks that state itself from the StreamStart/StreamStop it decodes.
#[derive(Debug, Default)]
pub struct Decoder {
    in_stream: bool,
}

/// The name of a pgoutput message type, for errors.
fn message_name(tag: u8) -> Option<&'static str> {
    Some(match tag {
        b'B' => "pgoutput Begin message",
        b'C' => "pgoutput Commit message",
        b'O' => "pgoutput Origin message",
        b'R' => "pgoutput Relation message",
        b'Y' => "pgoutput Type message",
        b'I' => "pgoutput Insert message",
        b'U' => "pgoutput Update message",
        b'D' => "pgoutput Delete message",
        b'T' => "pgoutput Truncate message",
        b'M' => "pgoutput Logical Message message",
        b'S' => "pgoutput Stream Start message",
        b'E' => "pgoutput Stream Stop message",
        b'c' => "pgoutput Stream Commit message",
        b'A' => "pgoutput Stream Abort message",
        _ => return None,
    })
}

/// The name of a two-phase commit message type (decoded as unsupported).
fn two_phase_name(tag: u8) -> Option<&'static str> {
    Some(match tag {
        b'b' => "pgoutput Begin Prepare message",
        b'P' => "pgoutput Prepare message",
        b'K' => "pgoutput Commit Prepared message",
        b'r' => "pgoutput Rollback Prepared message",
        b'p' => "pgoutput Stream Prepare message",
        _ => return None,
    })
}

impl Decoder {
    /// A decoder outside any streamed block.
    pub fn new() -> Self {
        Self::default()
    }

    /// Between a decoded Stream Start and its Stream Stop.
    pub fn in_stream(&self) -> bool {
        self.in_stream
    }

    /// Decodes one pgoutput message (one XLogData payload). The stream state only changes
    /// when the message decodes.
    pub fn decode(&mut self, data: &Bytes) -> Result<Message, DecodeError> {
        let Some(&tag) = data.first() else {
            return Err(DecodeError::Truncated {
                what: "pgoutput message",
                tag: None,
                offset: 0,
                need: 1,
            });
        };
        let Some(what) = message_name(tag) else {
            if let Some(what) = two_phase_name(tag) {
                return Err(DecodeError::Unsupported {
                    what,
                    tag,
                    reason: "two-phase commit decoding is not enabled by pgdog",
                });
            }
            return Err(DecodeError::UnknownMessage {
                what: "pgoutput message",
                tag,
                offset: 0,
            });
        };
        let mut r = Reader::new(data, 1, what, tag);
        self.check_placement(&r, tag)?;
        let message = self.body(&mut r, tag)?;
        r.finish()?;
        match message {
            Message::StreamStart { .. } => self.in_stream = true,
            Message::StreamStop => self.in_stream = false,
            _ => {}
        }
        Ok(message)
    }

    /// Rejects messages that cannot appear where we are (inside or outside a streamed block).
    fn check_placement(&self, r: &Reader<'_>, tag: u8) -> Result<(), DecodeError> {
        let wrong = match tag {
            b'B' | b'C' | b'S' | b'c' | b'A' => self.in_stream,
            b'E' => !self.in_stream,
            _ => false,
        };
        if wrong {
            let place = if self.in_stream {
                "inside a streamed block"
            } else {
                "outside a streamed block"
            };
            return Err(r.invalid(0, format!("message not allowed {place}")));
        }
        Ok(())
    }

    /// The leading xid of a message that has one only inside a streamed block.
    fn stream_xid(&self, r: &mut Reader<'_>) -> Result<Option<u32>, DecodeError> {
        if self.in_stream {
            Ok(Some(r.u32()?))
        } else {
            Ok(None)
        }
    }

    /// Decodes everything after the type byte.
    fn body(&self, r: &mut Reader<'_>, tag: u8) -> Result<Message, DecodeError> {
        Ok(match tag {
            b'B' => Message::Begin {
                final_lsn: r.lsn()?,
                commit_time: r.i64()?,
                xid: r.u32()?,
            },
            b'C' => Message::Commit {
                flags: r.u8()?,
                commit_lsn: r.lsn()?,
                end_lsn: r.lsn()?,
                commit_time: r.i64()?,
            },
            b'O' => Message::Origin {
                commit_lsn: r.lsn()?,
                name: r.cstring()?,
            },
            b'R' => Message::Relation {
                xid: self.stream_xid(r)?,
                relation: relation(r)?,
            },
            b'Y' => Message::Type {
                xid: self.stream_xid(r)?,
                oid: r.u32()?,
                schema: r.cstring()?,
                name: r.cstring()?,
            },
            b'I' => {
                let xid = self.stream_xid(r)?;
                let relation = r.u32()?;
                expect_kind(r, b'N', "'N' (new tuple)")?;
                Message::Insert {
                    xid,
                    relation,
                    new: tuple(r)?,
                }
            }
            b'U' => update(self.stream_xid(r)?, r)?,
            b'D' => {
                let xid = self.stream_xid(r)?;
                let relation = r.u32()?;
                let at = r.pos();
                let old = match r.u8()? {
                    b'K' => OldTuple::Key(tuple(r)?),
                    b'O' => OldTuple::Full(tuple(r)?),
                    other => return Err(bad_kind(r, at, other, "'K' or 'O' (old tuple)")),
                };
                Message::Delete { xid, relation, old }
            }
            b'T' => truncate(self.stream_xid(r)?, r)?,
            b'M' => {
                let xid = self.stream_xid(r)?;
                let flags = r.u8()?;
                let lsn = r.lsn()?;
                let prefix = r.cstring()?;
                Message::LogicalMessage {
                    xid,
                    transactional: flags & 1 != 0,
                    lsn,
                    prefix,
                    content: counted_bytes(r)?,
                }
            }
            b'S' => Message::StreamStart {
                xid: r.u32()?,
                first: r.u8()? == 1,
            },
            b'E' => Message::StreamStop,
            b'c' => Message::StreamCommit {
                xid: r.u32()?,
                flags: r.u8()?,
                commit_lsn: r.lsn()?,
                end_lsn: r.lsn()?,
                commit_time: r.i64()?,
            },
            b'A' => {
                let xid = r.u32()?;
                let subxid = r.u32()?;
                // v4 (parallel streaming) appends the abort LSN and time; all or nothing.
                let (abort_lsn, abort_time) = if r.remaining() == 0 {
                    (None, None)
                } else {
                    (Some(r.lsn()?), Some(r.i64()?))
                };
                Message::StreamAbort {
                    xid,
                    subxid,
                    abort_lsn,
                    abort_time,
                }
            }
            other => {
                return Err(DecodeError::UnknownMessage {
                    what: "pgoutput message",
                    tag: other,
                    offset: 0,
                })
            }
        })
    }
}

/// An `Invalid` error for an unexpected kind byte.
fn bad_kind(r: &Reader<'_>, at: usize, got: u8, expected: &str) -> DecodeError {
    let shown = if got.is_ascii_graphic() {
        format!("'{}'", got as char)
    } else {
        format!("0x{got:02X}")
    };
    r.invalid(at, format!("expected {expected}, got {shown}"))
}

/// Reads a kind byte that must be `kind`.
fn expect_kind(r: &mut Reader<'_>, kind: u8, expected: &str) -> Result<(), DecodeError> {
    let at = r.pos();
    let got = r.u8()?;
    if got != kind {
        return Err(bad_kind(r, at, got, expected));
    }
    Ok(())
}

/// A non-negative Int16 count.
fn count16(r: &mut Reader<'_>, what: &str) -> Result<usize, DecodeError> {
    let at = r.pos();
    let n = r.i16()?;
    usize::try_from(n).map_err(|_| r.invalid(at, format!("negative {what} {n}")))
}

/// An Int32 length followed by that many bytes.
fn counted_bytes(r: &mut Reader<'_>) -> Result<Bytes, DecodeError> {
    let at = r.pos();
    let len = r.i32()?;
    let len = usize::try_from(len).map_err(|_| r.invalid(at, format!("negative length {len}")))?;
    r.bytes(len)
}

/// TupleData: Int16 column count, then one kind byte (and maybe a value) per column.
fn tuple(r: &mut Reader<'_>) -> Result<Vec<Value>, DecodeError> {
    let n = count16(r, "column count")?;
    // Each column takes at least one byte: never trust the count for the allocation.
    let mut values = Vec::with_capacity(n.min(r.remaining()));
    for _ in 0..n {
        let at = r.pos();
        let value = match r.u8()? {
            b'n' => Value::Null,
            b'u' => Value::Unchanged,
            b't' => Value::Text(counted_bytes(r)?),
            b'b' => Value::Binary(counted_bytes(r)?),
            other => {
                return Err(bad_kind(
                    r,
                    at,
                    other,
                    "tuple value kind 'n', 'u', 't' or 'b'",
                ))
            }
        };
        values.push(value);
    }
    Ok(values)
}

/// The body of a Relation message after the optional xid.
fn relation(r: &mut Reader<'_>) -> Result<Relation, DecodeError> {
    let oid = r.u32()?;
    let schema = r.cstring()?;
    let name = r.cstring()?;
    let at = r.pos();
    let replica_identity = match r.u8()? {
        b'd' => ReplicaIdentity::Default,
        b'n' => ReplicaIdentity::Nothing,
        b'f' => ReplicaIdentity::Full,
        b'i' => ReplicaIdentity::Index,
        other => {
            return Err(bad_kind(
                r,
                at,
                other,
                "replica identity 'd', 'n', 'f' or 'i'",
            ))
        }
    };
    let n = count16(r, "column count")?;
    // A column takes at least 10 bytes (flags, empty name, type OID, modifier).
    let mut columns = Vec::with_capacity(n.min(r.remaining() / 10));
    for _ in 0..n {
        let flags = r.u8()?;
        columns.push(Column {
            key: flags & 1 != 0,
            name: r.cstring()?,
            type_oid: r.u32()?,
            type_modifier: r.i32()?,
        });
    }
    Ok(Relation {
        oid,
        schema,
        name,
        replica_identity,
        columns,
    })
}

/// The body of an Update message after the optional xid.
fn update(xid: Option<u32>, r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    let relation = r.u32()?;
    let at = r.pos();
    let (old, new) = match r.u8()? {
        kind @ (b'K' | b'O') => {
            let values = tuple(r)?;
            let old = if kind == b'O' {
                OldTuple::Full(values)
            } else {
                OldTuple::Key(values)
            };
            expect_kind(r, b'N', "'N' (new tuple)")?;
            (Some(old), tuple(r)?)
        }
        b'N' => (None, tuple(r)?),
        other => return Err(bad_kind(r, at, other, "'K', 'O' or 'N' (tuple)")),
    };
    Ok(Message::Update {
        xid,
        relation,
        old,
        new,
    })
}

/// The body of a Truncate message after the optional xid.
fn truncate(xid: Option<u32>, r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    let at = r.pos();
    let n = r.i32()?;
    let n =
        usize::try_from(n).map_err(|_| r.invalid(at, format!("negative relation count {n}")))?;
    let options = r.u8()?;
    let mut relations = Vec::with_capacity(n.min(r.remaining() / 4));
    for _ in 0..n {
        relations.push(r.u32()?);
    }
    Ok(Message::Truncate {
        xid,
        cascade: options & 1 != 0,
        restart_identity: options & 2 != 0,
        relations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds pgoutput messages byte by byte.
    #[derive(Clone)]
    struct B(Vec<u8>);

    impl B {
        fn new(tag: u8) -> Self {
            B(vec![tag])
        }
        fn u8(mut self, v: u8) -> Self {
            self.0.push(v);
            self
        }
        fn i16(mut self, v: i16) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn u32(mut self, v: u32) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn i32(mut self, v: i32) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn u64(mut self, v: u64) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn i64(mut self, v: i64) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn raw(mut self, v: &[u8]) -> Self {
            self.0.extend_from_slice(v);
            self
        }
        fn s(self, v: &str) -> Self {
            self.raw(v.as_bytes()).u8(0)
        }
        fn xid(self, xid: Option<u32>) -> Self {
            match xid {
                Some(xid) => self.u32(xid),
                None => self,
            }
        }
        fn tuple(self, values: &[Value]) -> Self {
            let mut b = self.i16(values.len() as i16);
            for value in values {
                b = match value {
                    Value::Null => b.u8(b'n'),
                    Value::Unchanged => b.u8(b'u'),
                    Value::Text(v) => b.u8(b't').i32(v.len() as i32).raw(v),
                    Value::Binary(v) => b.u8(b'b').i32(v.len() as i32).raw(v),
                };
            }
            b
        }
        fn bytes(&self) -> Bytes {
            Bytes::copy_from_slice(&self.0)
        }
    }

    fn text(v: &'static str) -> Value {
        Value::Text(Bytes::from_static(v.as_bytes()))
    }

    fn binary(v: &'static [u8]) -> Value {
        Value::Binary(Bytes::from_static(v))
    }

    fn decoder(in_stream: bool) -> Decoder {
        Decoder { in_stream }
    }

    /// A valid message, the stream state it is decoded in, and what it decodes to.
    struct Case {
        name: &'static str,
        in_stream: bool,
        raw: B,
        expected: Message,
    }

    fn row() -> Vec<Value> {
        vec![
            text("42"),
            Value::Null,
            Value::Unchanged,
            binary(&[0, 1, 2, 0xFF]),
            text(""),
        ]
    }

    fn key() -> Vec<Value> {
        vec![
            text("42"),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
        ]
    }

    fn relation_case(xid: Option<u32>) -> Case {
        Case {
            name: "relation",
            in_stream: xid.is_some(),
            raw: B::new(b'R')
                .xid(xid)
                .u32(16384)
                .s("public")
                .s("users")
                .u8(b'd')
                .i16(3)
                .u8(1)
                .s("id")
                .u32(20)
                .i32(-1)
                .u8(0)
                .s("name")
                .u32(1043)
                .i32(68)
                .u8(0)
                .s("")
                .u32(25)
                .i32(-1),
            expected: Message::Relation {
                xid,
                relation: Relation {
                    oid: 16384,
                    schema: "public".into(),
                    name: "users".into(),
                    replica_identity: ReplicaIdentity::Default,
                    columns: vec![
                        Column {
                            key: true,
                            name: "id".into(),
                            type_oid: 20,
                            type_modifier: -1,
                        },
                        Column {
                            key: false,
                            name: "name".into(),
                            type_oid: 1043,
                            type_modifier: 68,
                        },
                        Column {
                            key: false,
                            name: "".into(),
                            type_oid: 25,
                            type_modifier: -1,
                        },
                    ],
                },
            },
        }
    }

    fn cases() -> Vec<Case> {
        let mut cases = vec![
            Case {
                name: "begin",
                in_stream: false,
                raw: B::new(b'B').u64(0x16_B374_D848).i64(-5).u32(777),
                expected: Message::Begin {
                    final_lsn: Lsn(0x16_B374_D848),
                    commit_time: -5,
                    xid: 777,
                },
            },
            Case {
                name: "commit",
                in_stream: false,
                raw: B::new(b'C').u8(0).u64(10).u64(20).i64(30),
                expected: Message::Commit {
                    flags: 0,
                    commit_lsn: Lsn(10),
                    end_lsn: Lsn(20),
                    commit_time: 30,
                },
            },
            Case {
                name: "origin",
                in_stream: false,
                raw: B::new(b'O').u64(99).s("node_a"),
                expected: Message::Origin {
                    commit_lsn: Lsn(99),
                    name: "node_a".into(),
                },
            },
            Case {
                name: "origin in stream",
                in_stream: true,
                raw: B::new(b'O').u64(0).s("n"),
                expected: Message::Origin {
                    commit_lsn: Lsn::ZERO,
                    name: "n".into(),
                },
            },
            relation_case(None),
            relation_case(Some(901)),
        ];
        for xid in [None, Some(902)] {
            let in_stream = xid.is_some();
            cases.push(Case {
                name: "type",
                in_stream,
                raw: B::new(b'Y').xid(xid).u32(70000).s("").s("mood"),
                expected: Message::Type {
                    xid,
                    oid: 70000,
                    schema: "".into(),
                    name: "mood".into(),
                },
            });
            cases.push(Case {
                name: "insert",
                in_stream,
                raw: B::new(b'I').xid(xid).u32(16384).u8(b'N').tuple(&row()),
                expected: Message::Insert {
                    xid,
                    relation: 16384,
                    new: row(),
                },
            });
            cases.push(Case {
                name: "update without old",
                in_stream,
                raw: B::new(b'U').xid(xid).u32(16384).u8(b'N').tuple(&row()),
                expected: Message::Update {
                    xid,
                    relation: 16384,
                    old: None,
                    new: row(),
                },
            });
            cases.push(Case {
                name: "update with key",
                in_stream,
                raw: B::new(b'U')
                    .xid(xid)
                    .u32(16384)
                    .u8(b'K')
                    .tuple(&key())
                    .u8(b'N')
                    .tuple(&row()),
                expected: Message::Update {
                    xid,
                    relation: 16384,
                    old: Some(OldTuple::Key(key())),
                    new: row(),
                },
            });
            cases.push(Case {
                name: "update with old row",
                in_stream,
                raw: B::new(b'U')
                    .xid(xid)
                    .u32(16384)
                    .u8(b'O')
                    .tuple(&row())
                    .u8(b'N')
                    .tuple(&[text("1")]),
                expected: Message::Update {
                    xid,
                    relation: 16384,
                    old: Some(OldTuple::Full(row())),
                    new: vec![text("1")],
                },
            });
            cases.push(Case {
                name: "delete with key",
                in_stream,
                raw: B::new(b'D').xid(xid).u32(5).u8(b'K').tuple(&key()),
                expected: Message::Delete {
                    xid,
                    relation: 5,
                    old: OldTuple::Key(key()),
                },
            });
            cases.push(Case {
                name: "delete with old row",
                in_stream,
                raw: B::new(b'D').xid(xid).u32(5).u8(b'O').tuple(&row()),
                expected: Message::Delete {
                    xid,
                    relation: 5,
                    old: OldTuple::Full(row()),
                },
            });
            cases.push(Case {
                name: "truncate",
                in_stream,
                raw: B::new(b'T').xid(xid).i32(2).u8(3).u32(10).u32(11),
                expected: Message::Truncate {
                    xid,
                    cascade: true,
                    restart_identity: true,
                    relations: vec![10, 11],
                },
            });
            cases.push(Case {
                name: "truncate restart identity",
                in_stream,
                raw: B::new(b'T').xid(xid).i32(1).u8(2).u32(10),
                expected: Message::Truncate {
                    xid,
                    cascade: false,
                    restart_identity: true,
                    relations: vec![10],
                },
            });
            cases.push(Case {
                name: "transactional logical message",
                in_stream,
                raw: B::new(b'M')
                    .xid(xid)
                    .u8(1)
                    .u64(123)
                    .s("pgdog")
                    .i32(3)
                    .raw(b"a\0b"),
                expected: Message::LogicalMessage {
                    xid,
                    transactional: true,
                    lsn: Lsn(123),
                    prefix: "pgdog".into(),
                    content: Bytes::from_static(b"a\0b"),
                },
            });
        }
        cases.extend([
            Case {
                name: "non-transactional logical message",
                in_stream: false,
                raw: B::new(b'M').u8(0).u64(1).s("p").i32(0),
                expected: Message::LogicalMessage {
                    xid: None,
                    transactional: false,
                    lsn: Lsn(1),
                    prefix: "p".into(),
                    content: Bytes::new(),
                },
            },
            Case {
                name: "truncate cascade",
                in_stream: false,
                raw: B::new(b'T').i32(1).u8(1).u32(10),
                expected: Message::Truncate {
                    xid: None,
                    cascade: true,
                    restart_identity: false,
                    relations: vec![10],
                },
            },
            Case {
                name: "stream start first",
                in_stream: false,
                raw: B::new(b'S').u32(900).u8(1),
                expected: Message::StreamStart {
                    xid: 900,
                    first: true,
                },
            },
            Case {
                name: "stream start later",
                in_stream: false,
                raw: B::new(b'S').u32(900).u8(0),
                expected: Message::StreamStart {
                    xid: 900,
                    first: false,
                },
            },
            Case {
                name: "stream stop",
                in_stream: true,
                raw: B::new(b'E'),
                expected: Message::StreamStop,
            },
            Case {
                name: "stream commit",
                in_stream: false,
                raw: B::new(b'c').u32(900).u8(0).u64(50).u64(60).i64(70),
                expected: Message::StreamCommit {
                    xid: 900,
                    flags: 0,
                    commit_lsn: Lsn(50),
                    end_lsn: Lsn(60),
                    commit_time: 70,
                },
            },
            Case {
                name: "stream abort v2",
                in_stream: false,
                raw: B::new(b'A').u32(900).u32(901),
                expected: Message::StreamAbort {
                    xid: 900,
                    subxid: 901,
                    abort_lsn: None,
                    abort_time: None,
                },
            },
            Case {
                name: "stream abort v4",
                in_stream: false,
                raw: B::new(b'A').u32(900).u32(900).u64(0xABCDEF).i64(-1),
                expected: Message::StreamAbort {
                    xid: 900,
                    subxid: 900,
                    abort_lsn: Some(Lsn(0xABCDEF)),
                    abort_time: Some(-1),
                },
            },
        ]);
        cases
    }

    #[test]
    fn decodes_every_message_kind() {
        for case in cases() {
            let mut d = decoder(case.in_stream);
            let got = d.decode(&case.raw.bytes());
            assert_eq!(
                got.as_ref().ok(),
                Some(&case.expected),
                "{}: {got:?}",
                case.name
            );
        }
    }

    #[test]
    fn replica_identities() {
        for (byte, identity) in [
            (b'd', ReplicaIdentity::Default),
            (b'n', ReplicaIdentity::Nothing),
            (b'f', ReplicaIdentity::Full),
            (b'i', ReplicaIdentity::Index),
        ] {
            let raw = B::new(b'R').u32(1).s("s").s("t").u8(byte).i16(0).bytes();
            match Decoder::new().decode(&raw).unwrap() {
                Message::Relation { relation, .. } => {
                    assert_eq!(relation.replica_identity, identity);
                    assert!(relation.columns.is_empty());
                }
                other => panic!("{other:?}"),
            }
        }
        let raw = B::new(b'R').u32(1).s("s").s("t").u8(b'z').i16(0).bytes();
        let err = Decoder::new().decode(&raw).unwrap_err();
        assert!(
            matches!(err, DecodeError::Invalid { offset: 9, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("'z'"), "{err}");
    }

    #[test]
    fn values_are_zero_copy() {
        let raw = B::new(b'I').u32(1).u8(b'N').tuple(&[text("hello")]).bytes();
        let Message::Insert { new, .. } = Decoder::new().decode(&raw).unwrap() else {
            panic!("not an insert");
        };
        let Value::Text(v) = &new[0] else {
            panic!("not text");
        };
        assert_eq!(v.as_ptr(), raw[raw.len() - 5..].as_ptr());
    }

    #[test]
    fn tracks_stream_state() {
        let mut d = Decoder::new();
        assert!(!d.in_stream());
        let start = d.decode(&B::new(b'S').u32(7).u8(1).bytes()).unwrap();
        assert_eq!(
            start,
            Message::StreamStart {
                xid: 7,
                first: true
            }
        );
        assert!(d.in_stream());
        let insert = B::new(b'I').u32(7).u32(16384).u8(b'N').tuple(&[text("1")]);
        assert_eq!(
            d.decode(&insert.bytes()).unwrap(),
            Message::Insert {
                xid: Some(7),
                relation: 16384,
                new: vec![text("1")],
            }
        );
        // A failed decode leaves the state alone.
        assert!(d.decode(&B::new(b'E').u8(0).bytes()).is_err());
        assert!(d.in_stream());
        assert_eq!(
            d.decode(&B::new(b'E').bytes()).unwrap(),
            Message::StreamStop
        );
        assert!(!d.in_stream());
        // The same in-stream Insert outside the block is misread and rejected.
        assert!(d.decode(&insert.bytes()).is_err());
        assert!(!d.in_stream());
        let commit = B::new(b'c').u32(7).u8(0).u64(1).u64(2).i64(3).bytes();
        assert!(matches!(
            d.decode(&commit).unwrap(),
            Message::StreamCommit { xid: 7, .. }
        ));
    }

    #[test]
    fn wrong_stream_state_is_an_error() {
        // Not-in-stream messages decoded as if in a stream and the other way round.
        for case in cases() {
            let raw = case.raw.bytes();
            let tag = raw[0];
            // The format cannot always tell: read with an extra leading xid, the Relation's
            // OID and schema bytes can still form a valid Relation, and the Message's flags
            // and LSN bytes a valid Message. These two are known to decode (wrongly).
            let ambiguous = !case.in_stream
                && ["relation", "transactional logical message"].contains(&case.name);
            if b"RYIUDTM".contains(&tag) && !ambiguous {
                let got = decoder(!case.in_stream).decode(&raw);
                assert!(got.is_err(), "{}: {got:?}", case.name);
            }
        }
        // Trailing bytes are caught precisely: a non-stream Truncate read in a stream.
        let raw = B::new(b'T').i32(2).u8(0).u32(10).u32(11).bytes();
        let err = decoder(true).decode(&raw).unwrap_err();
        assert!(err.to_string().contains("trailing"), "{err}");
        // Messages that only live on one side of a streamed block.
        for (in_stream, raw) in [
            (true, B::new(b'B').u64(1).i64(2).u32(3)),
            (true, B::new(b'C').u8(0).u64(1).u64(2).i64(3)),
            (true, B::new(b'S').u32(1).u8(1)),
            (true, B::new(b'c').u32(1).u8(0).u64(1).u64(2).i64(3)),
            (true, B::new(b'A').u32(1).u32(1)),
            (false, B::new(b'E')),
        ] {
            let err = decoder(in_stream).decode(&raw.bytes()).unwrap_err();
            assert!(
                matches!(err, DecodeError::Invalid { offset: 0, .. }),
                "{err}"
            );
            assert!(err.to_string().contains("streamed block"), "{err}");
        }
    }

    #[test]
    fn trailing_bytes_are_invalid() {
        for case in cases() {
            let raw = case.raw.clone().u8(0).bytes();
            let err = decoder(case.in_stream).decode(&raw).unwrap_err();
            if case.name == "stream abort v2" {
                // Extra bytes there are the start of the v4 fields, cut short.
                assert!(matches!(
                    err,
                    DecodeError::Truncated {
                        offset: 9,
                        need: 7,
                        ..
                    }
                ));
                continue;
            }
            assert!(
                matches!(err, DecodeError::Invalid { offset, .. } if offset == raw.len() - 1),
                "{}: {err}",
                case.name
            );
        }
    }

    #[test]
    fn every_truncation_fails() {
        for case in cases() {
            let full = case.raw.bytes();
            for len in 0..full.len() {
                let got = decoder(case.in_stream).decode(&full.slice(..len));
                // A v4 Stream Abort cut right after subxid is a valid v2 Stream Abort.
                if case.name == "stream abort v4" && len == 9 {
                    assert!(matches!(
                        got,
                        Ok(Message::StreamAbort {
                            abort_lsn: None,
                            ..
                        })
                    ));
                    continue;
                }
                assert!(got.is_err(), "{} cut at {len}: {got:?}", case.name);
            }
        }
    }

    #[test]
    fn error_messages_name_message_type_and_offset() {
        let raw = B::new(b'U').u32(1).u8(b'N').i16(1).u8(b't').i32(4).bytes();
        let err = Decoder::new().decode(&raw).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Truncated {
                what: "pgoutput Update message",
                tag: Some(b'U'),
                offset: 13,
                need: 4,
            }
        );
        assert_eq!(
            err.to_string(),
            "pgoutput Update message ('U'): truncated at byte 13 (need 4 more)"
        );
        let err = Decoder::new().decode(&Bytes::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "pgoutput message: truncated at byte 0 (need 1 more)"
        );
        let err = Decoder::new()
            .decode(&Bytes::from_static(b"Z"))
            .unwrap_err();
        assert!(matches!(err, DecodeError::UnknownMessage { tag: b'Z', .. }));
        assert_eq!(
            err.to_string(),
            "pgoutput message: unknown message type 'Z' at byte 0"
        );
        let err = Decoder::new()
            .decode(&Bytes::from_static(b"\x01"))
            .unwrap_err();
        assert!(err.to_string().contains("0x01"), "{err}");
    }

    #[test]
    fn two_phase_messages_are_unsupported() {
        for (tag, name) in [
            (b'b', "Begin Prepare"),
            (b'P', "Prepare"),
            (b'K', "Commit Prepared"),
            (b'r', "Rollback Prepared"),
            (b'p', "Stream Prepare"),
        ] {
            let raw = B::new(tag).u64(1).u64(2).i64(3).u32(4).s("gid").bytes();
            let err = Decoder::new().decode(&raw).unwrap_err();
            assert!(matches!(err, DecodeError::Unsupported { tag: t, .. } if t == tag));
            let text = err.to_string();
            assert!(text.contains(&format!("pgoutput {name} message")), "{text}");
            assert!(text.contains(&format!("'{}'", tag as char)), "{text}");
        }
    }

    #[test]
    fn invalid_fields() {
        let bad = [
            // Unknown tuple value kind.
            (B::new(b'I').u32(1).u8(b'N').i16(1).u8(b'x'), 8),
            // Insert without 'N'.
            (B::new(b'I').u32(1).u8(b'K').i16(0), 5),
            // Update with an unknown tuple marker.
            (B::new(b'U').u32(1).u8(b'X').i16(0), 5),
            // Update with an old key but no 'N' after it.
            (B::new(b'U').u32(1).u8(b'K').i16(0).u8(b'K').i16(0), 8),
            // Delete must carry 'K' or 'O'.
            (B::new(b'D').u32(1).u8(b'N').i16(0), 5),
            // Negative value length.
            (B::new(b'I').u32(1).u8(b'N').i16(1).u8(b't').i32(-1), 9),
            // Negative column count.
            (B::new(b'I').u32(1).u8(b'N').i16(-1), 6),
            (B::new(b'R').u32(1).s("s").s("t").u8(b'd').i16(-2), 10),
            // Negative relation count.
            (B::new(b'T').i32(-1).u8(0), 1),
            // Negative logical message length.
            (B::new(b'M').u8(0).u64(1).s("p").i32(-3), 12),
            // Unterminated string.
            (B::new(b'O').u64(1).raw(b"abc"), 9),
        ];
        for (raw, offset) in bad {
            let err = Decoder::new().decode(&raw.bytes()).unwrap_err();
            assert!(
                matches!(err, DecodeError::Invalid { offset: o, .. } if o == offset),
                "{:?}: {err}",
                raw.0
            );
        }
        let err = Decoder::new()
            .decode(&B::new(b'O').u64(1).raw(b"a\xffb\0").bytes())
            .unwrap_err();
        assert!(
            matches!(err, DecodeError::InvalidUtf8 { offset: 9, .. }),
            "{err}"
        );
    }

    #[test]
    fn huge_counts_do_not_allocate() {
        for raw in [
            B::new(b'I').u32(1).u8(b'N').i16(i16::MAX),
            B::new(b'R').u32(1).s("").s("").u8(b'd').i16(i16::MAX),
            B::new(b'T').i32(i32::MAX).u8(0),
            B::new(b'M').u8(0).u64(1).s("").i32(i32::MAX),
            B::new(b'I').u32(1).u8(b'N').i16(1).u8(b'b').i32(i32::MAX),
        ] {
            let err = Decoder::new().decode(&raw.bytes()).unwrap_err();
            assert!(matches!(err, DecodeError::Truncated { .. }), "{err}");
        }
    }

    /// Deterministic xorshift so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        let tags = b"BCORYIUDTMSEcAbPKrpNnutbKO";
        for i in 0..10_000 {
            let len = rng.below(64);
            let mut raw: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if let Some(first) = raw.first_mut() {
                if i % 2 == 0 {
                    *first = tags[rng.below(tags.len())];
                }
            }
            let raw = Bytes::from(raw);
            let _ = decoder(false).decode(&raw);
            let _ = decoder(true).decode(&raw);
        }
    }

    #[test]
    fn mutated_messages_never_panic() {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        for case in cases() {
            for _ in 0..300 {
                let mut raw = case.raw.0.clone();
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(raw.len());
                    raw[at] = match rng.below(4) {
                        0 => 0,
                        1 => 0xFF,
                        2 => raw[at].wrapping_add(1),
                        _ => rng.next() as u8,
                    };
                }
                if rng.below(4) == 0 {
                    raw.truncate(rng.below(raw.len() + 1));
                }
                let _ = decoder(case.in_stream).decode(&Bytes::from(raw));
            }
        }
    }
}
