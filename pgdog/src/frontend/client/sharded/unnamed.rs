//! Running a client's statement on a shard as the server's unnamed statement and portal: the
//! one way pgdog sends statements it rewrote, split or runs on several shards over the
//! extended protocol.

use bytes::BytesMut;

use crate::backend::expect::Expect;
use crate::backend::server::Server;
use crate::net::messages::{self, Bind};

/// One statement to run as the unnamed statement.
pub(super) struct UnnamedRun<'a> {
    /// Its text.
    pub sql: &'a str,
    /// Its raw parameter type section (as in Parse).
    pub param_types: &'a [u8],
    /// The client's Bind: parameter values and formats, result formats.
    pub bind: &'a Bind<'a>,
    /// Which of the Bind's parameters, in `$1..` order; `None`: all of them.
    pub params: Option<&'a [usize]>,
    /// Results in text, whatever the client asked for (pgdog reads them itself).
    pub text_results: bool,
    /// Describe the portal (the merge needs the column types).
    pub describe: bool,
    /// End with Sync (the server answers up to ReadyForQuery) instead of Flush.
    pub sync: bool,
}

impl UnnamedRun<'_> {
    /// Writes Parse, Bind, [Describe,] Execute and Flush or Sync for `server`, and records the
    /// answers it owes.
    pub(super) fn encode(&self, server: &mut Server, to_server: &mut BytesMut) {
        to_server.extend_from_slice(&messages::parse_message("", self.sql, self.param_types));
        server.pending.push(Expect::Parse(None));
        let all: Vec<usize>;
        let params = match self.params {
            Some(params) => params,
            None => {
                all = (0..self.bind.params.len()).collect();
                &all
            }
        };
        let bind = Bind {
            portal: "",
            result_formats: if self.text_results {
                Vec::new()
            } else {
                self.bind.result_formats.clone()
            },
            ..self.bind.clone()
        };
        to_server.extend_from_slice(&bind.encode_subset("", params));
        server.pending.push(Expect::Bind);
        if self.describe {
            to_server.extend_from_slice(&messages::describe_portal(""));
            server.pending.push(Expect::Describe(None));
        }
        to_server.extend_from_slice(&messages::execute(""));
        server.pending.push(Expect::Execute);
        if self.sync {
            to_server.extend_from_slice(&messages::sync());
            server.pending.push(Expect::Sync);
        } else {
            to_server.extend_from_slice(&messages::flush());
        }
    }
}
