//! Which client batches only read, and so may run on a replica: every statement in them is
//! read-only (by the `pg_query` classifier) and the batch is a complete request.

use crate::frontend::statements::ClientStatements;
use crate::net::frame::Reader;
use crate::net::messages::{self, Parse};
use crate::net::Frame;
use crate::router::{Access, AccessCache};

/// Whether `frames` form a complete request (ending with a simple query or Sync) whose every
/// statement is read-only. Named statements are looked up in the client's `statements`; the
/// unnamed one must be parsed in the same batch.
pub fn read_only_batch(
    frames: &[Frame],
    statements: &ClientStatements,
    access: &AccessCache,
) -> bool {
    if !matches!(frames.last().map(|f| f.tag), Some(b'Q' | b'S')) {
        return false;
    }
    let reads = |sql: &str| access.access(sql) == Access::Read;
    frames.iter().all(|frame| match frame.tag {
        b'Q' => Reader::new(frame.body()).cstr().is_ok_and(reads),
        b'P' => Parse::decode(frame).is_ok_and(|parse| reads(parse.query)),
        b'B' => match messages::bind_statement(frame) {
            Ok("") => frames.iter().any(|f| {
                f.tag == b'P' && Parse::decode(f).is_ok_and(|parse| parse.name.is_empty())
            }),
            Ok(name) => statements
                .get(name)
                .is_some_and(|statement| statement.read_only(reads)),
            Err(_) => false,
        },
        b'D' | b'E' | b'S' | b'H' | b'C' => true,
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(sql: &str) -> Frame {
        Frame::new(b'Q', format!("{sql}\0").as_bytes())
    }

    #[test]
    fn complete_read_requests_only() {
        let statements = ClientStatements::default();
        let access = AccessCache::default();
        assert!(read_only_batch(&[query("SELECT 1")], &statements, &access));
        assert!(!read_only_batch(
            &[query("INSERT INTO t VALUES (1)")],
            &statements,
            &access
        ));
        assert!(!read_only_batch(
            &[query("SELECT 1"), query("BEGIN")],
            &statements,
            &access
        ));
        // A Bind of a statement this client never prepared is not known to read.
        let bind = Frame::new(b'B', b"\0s1\0\0\0\0\0\0\0");
        let sync = Frame::new(b'S', b"");
        assert!(!read_only_batch(&[bind, sync], &statements, &access));
        // No Sync yet: the request is not complete.
        let parse = Frame::new(b'P', b"\0SELECT 1\0\0\0");
        assert!(!read_only_batch(&[parse], &statements, &access));
    }
}
