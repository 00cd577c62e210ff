//! A new client connection up to ReadyForQuery: SSL/GSS negotiation, CancelRequest,
//! StartupMessage, password authentication and the initial ParameterStatus messages.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::BytesMut;
use pgdog_config::AuthType;
use rand::RngCore;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::auth::{md5, AuthError, ScramExchange, ScramSecret, UserSecret};
use crate::backend::databases::Cluster;
use crate::backend::server::BackendKey;
use crate::frontend::cancel::CancelTarget;
use crate::frontend::session::{self, SessionParams};
use crate::net::frame::Reader;
use crate::net::startup::{StartupPacket, PROTOCOL_3_0};
use crate::net::stream::Stream;
use crate::net::{messages, sqlstate, Error, ErrorResponse, Frame};
use crate::state::PoolerState;

/// Largest password message accepted during authentication.
const MAX_AUTH_MESSAGE: usize = 8 * 1024;

/// A client that passed authentication.
pub struct LoggedIn {
    /// Its connection.
    pub stream: Stream,
    /// Bytes it sent after the startup sequence (pipelined queries).
    pub buf: BytesMut,
    /// The user it logged in as.
    pub user: String,
    /// The database it connected to.
    pub database: String,
    /// Its cluster.
    pub cluster: Arc<Cluster>,
    /// Its session settings from the startup packet.
    pub params: SessionParams,
    /// The key it was given for cancel requests.
    pub key: BackendKey,
    /// Where its cancel requests go.
    pub cancel: Arc<CancelTarget>,
    /// Its address.
    pub peer: Option<std::net::SocketAddr>,
    /// `application_name` from its startup packet.
    pub application_name: String,
}

/// An operator logged in to the admin database.
pub struct AdminLogin {
    /// Its connection.
    pub stream: Stream,
    /// Bytes it sent after the startup sequence.
    pub buf: BytesMut,
    /// The admin user.
    pub user: String,
    /// The admin database's name.
    pub database: String,
    /// Its address.
    pub peer: Option<std::net::SocketAddr>,
    /// `application_name` from its startup packet.
    pub application_name: String,
}

/// A connection that finished its startup.
pub enum Session {
    /// An application client of a configured database.
    Client(LoggedIn),
    /// An operator on the admin database.
    Admin(AdminLogin),
}

/// How a connection's startup ended without a logged-in client.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The client broke the protocol or the socket failed.
    #[error(transparent)]
    Net(#[from] Error),
    /// pgdog refused it; the error was sent to the client.
    #[error("{0}")]
    Refused(ErrorResponse),
    /// It was a CancelRequest (now forwarded) or the client hung up.
    #[error("connection closed during startup")]
    Done,
}

/// Runs the startup sequence on a new connection.
pub async fn login(tcp: TcpStream, state: &PoolerState) -> Result<Session, LoginError> {
    let peer = tcp.peer_addr().ok();
    let mut stream = Stream::Plain(tcp);
    let mut buf = BytesMut::with_capacity(1024);
    let (version, params) = loop {
        let packet = match read_startup(&mut stream, &mut buf).await {
            Ok(packet) => packet,
            Err(LoginError::Net(e)) => return refuse(&mut stream, e.to_response()).await,
            Err(e) => return Err(e),
        };
        match packet {
            StartupPacket::Ssl => match (state.tls(), stream) {
                (Some(acceptor), Stream::Plain(mut tcp)) if buf.is_empty() => {
                    tcp.write_all(b"S").await.map_err(Error::from)?;
                    let tls = acceptor.accept(tcp).await.map_err(Error::from)?;
                    stream = Stream::Tls(tls);
                }
                (_, mut other) => {
                    other.write_all(b"N").await.map_err(Error::from)?;
                    stream = other;
                }
            },
            StartupPacket::GssEnc => {
                stream.write_all(b"N").await.map_err(Error::from)?;
            }
            StartupPacket::Cancel { pid, secret } => {
                state.cancels.cancel(BackendKey { pid, secret }).await;
                return Err(LoginError::Done);
            }
            StartupPacket::Startup { version, params } => break (version, params),
        }
    };
    if version >> 16 != 3 {
        let error = ErrorResponse::fatal(
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!(
                "unsupported frontend protocol {}.{}: server supports 3.0 to 3.0",
                version >> 16,
                version & 0xffff
            ),
        );
        return refuse(&mut stream, error).await;
    }
    let protocol_options: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k.starts_with("_pq_."))
        .map(|(k, _)| k.as_str())
        .collect();
    if version != PROTOCOL_3_0 || !protocol_options.is_empty() {
        let reply = messages::negotiate_protocol_version(PROTOCOL_3_0, &protocol_options);
        stream.write_all(&reply).await.map_err(Error::from)?;
    }
    let lookup: HashMap<&str, &str> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let Some(user) = lookup.get("user").map(|u| u.to_string()) else {
        let error = ErrorResponse::fatal(
            sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
            "no PostgreSQL user name specified in startup packet",
        );
        return refuse(&mut stream, error).await;
    };
    let database = lookup
        .get("database")
        .filter(|d| !d.is_empty())
        .map(|d| d.to_string())
        .unwrap_or_else(|| user.clone());
    if lookup.contains_key("replication") && lookup["replication"] != "false" {
        let error = ErrorResponse::fatal(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "replication connections are not supported through pgdog; connect to the server directly",
        );
        return refuse(&mut stream, error).await;
    }

    let databases = state.databases();
    let admin = databases.config().admin();
    if database == admin.name {
        let auth_type = databases.config().config.general.auth_type;
        drop(databases);
        // The admin database always needs a password, even with auth_type = "trust".
        let auth_type = match auth_type {
            AuthType::Trust => AuthType::Scram,
            other => other,
        };
        let secret = (user == admin.user)
            .then(|| UserSecret::new(&user, Some(state.admin_password().as_str()), None));
        let authenticated =
            match authenticate(&mut stream, &mut buf, auth_type, secret.as_ref()).await {
                Ok(ok) => ok,
                Err(LoginError::Net(e)) => return refuse(&mut stream, e.to_response()).await,
                Err(e) => return Err(e),
            };
        if !authenticated {
            let error = ErrorResponse::fatal(
                sqlstate::INVALID_PASSWORD,
                format!("password authentication failed for user \"{user}\""),
            );
            return refuse(&mut stream, error).await;
        }
        let application_name = lookup
            .get("application_name")
            .map(|a| a.to_string())
            .unwrap_or_default();
        let mut out = BytesMut::with_capacity(512);
        out.extend_from_slice(&messages::authentication_ok());
        for (name, value) in [
            ("server_version", "15.0 (pgdog admin)"),
            ("server_encoding", "UTF8"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"),
            ("TimeZone", "UTC"),
            ("integer_datetimes", "on"),
            ("standard_conforming_strings", "on"),
            ("application_name", application_name.as_str()),
        ] {
            out.extend_from_slice(&messages::parameter_status(name, value));
        }
        let mut key = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut key);
        out.extend_from_slice(&messages::backend_key_data(
            i32::from_be_bytes([key[0], key[1], key[2], key[3]]),
            i32::from_be_bytes([key[4], key[5], key[6], key[7]]),
        ));
        out.extend_from_slice(&messages::ready_for_query(b'I'));
        stream.write_all(&out).await.map_err(Error::from)?;
        return Ok(Session::Admin(AdminLogin {
            stream,
            buf,
            user,
            database,
            peer,
            application_name,
        }));
    }
    if !databases.has_database(&database) {
        let error = ErrorResponse::fatal(
            sqlstate::INVALID_CATALOG_NAME,
            format!("database \"{database}\" does not exist"),
        )
        .hint("check the database name, or add a [[databases]] entry for it to pgdog.toml");
        return refuse(&mut stream, error).await;
    }
    let cluster = databases.cluster(&user, &database).cloned();
    let auth_type = databases.config().config.general.auth_type;
    drop(databases);

    let authenticated = match authenticate(
        &mut stream,
        &mut buf,
        auth_type,
        cluster.as_deref().map(|c| &c.secret),
    )
    .await
    {
        Ok(ok) => ok,
        Err(LoginError::Net(e)) => return refuse(&mut stream, e.to_response()).await,
        Err(e) => return Err(e),
    };
    let cluster = match (authenticated, cluster) {
        (true, Some(cluster)) => cluster,
        _ => {
            let error = ErrorResponse::fatal(
                sqlstate::INVALID_PASSWORD,
                format!("password authentication failed for user \"{user}\""),
            );
            return refuse(&mut stream, error).await;
        }
    };

    let Some(pool) = cluster.primary().cloned() else {
        let error = ErrorResponse::fatal(
            sqlstate::CLIENT_UNABLE_TO_ESTABLISH_CONNECTION,
            format!("database \"{database}\" has no primary configured"),
        );
        return refuse(&mut stream, error).await;
    };
    let reachable = pool.check_reachable().await;
    let server_params = match reachable.and(pool.server_params().await) {
        Ok(params) => params,
        Err(e) => {
            let error = ErrorResponse::fatal(
                sqlstate::CLIENT_UNABLE_TO_ESTABLISH_CONNECTION,
                format!("pgdog could not connect to the server for database \"{database}\": {e}"),
            );
            return refuse(&mut stream, error).await;
        }
    };

    // Settings the client asked for that differ from the server's defaults travel with it.
    let defaults: HashMap<&str, &str> = server_params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // `options` (PGOPTIONS) carries "-c name=value" settings; they count like the others.
    let from_options = lookup
        .get("options")
        .map(|o| session::options_settings(o))
        .unwrap_or_default();
    let client_settings: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| {
            !matches!(k.as_str(), "user" | "database" | "replication" | "options")
                && !k.starts_with("_pq_.")
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(from_options.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .filter(|(k, v)| {
            defaults
                .get(k)
                .map(|d| !d.eq_ignore_ascii_case(v))
                .unwrap_or(true)
        })
        .collect();

    let (key, cancel) = state.cancels.register();
    let mut out = BytesMut::with_capacity(1024);
    out.extend_from_slice(&messages::authentication_ok());
    for (name, value) in server_params.iter() {
        let value = lookup.get(name.as_str()).copied().unwrap_or(value.as_str());
        out.extend_from_slice(&messages::parameter_status(name, value));
    }
    out.extend_from_slice(&messages::backend_key_data(key.pid, key.secret));
    out.extend_from_slice(&messages::ready_for_query(b'I'));
    if let Err(e) = stream.write_all(&out).await {
        state.cancels.unregister(key);
        return Err(Error::from(e).into());
    }
    Ok(Session::Client(LoggedIn {
        stream,
        buf,
        user,
        database,
        params: SessionParams::from_startup(client_settings),
        cluster,
        key,
        cancel,
        peer,
        application_name: lookup
            .get("application_name")
            .map(|a| a.to_string())
            .unwrap_or_default(),
    }))
}

/// Sends a FATAL error and ends the login.
async fn refuse(stream: &mut Stream, error: ErrorResponse) -> Result<Session, LoginError> {
    let _ = stream.write_all(&error.to_bytes()).await;
    let _ = stream.shutdown().await;
    Err(LoginError::Refused(error))
}

async fn read_startup(
    stream: &mut Stream,
    buf: &mut BytesMut,
) -> Result<StartupPacket, LoginError> {
    loop {
        if let Some(packet) = StartupPacket::take(buf)? {
            return Ok(packet);
        }
        if read_more(stream, buf).await? == 0 {
            return Err(LoginError::Done);
        }
    }
}

async fn read_more(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
) -> Result<usize, Error> {
    buf.reserve(1024);
    Ok(stream.read_buf(buf).await?)
}

/// Reads the next tagged message during authentication, which must be a password message.
async fn read_password_message(
    stream: &mut Stream,
    buf: &mut BytesMut,
) -> Result<Frame, LoginError> {
    loop {
        if let Some(frame) = Frame::take(buf, MAX_AUTH_MESSAGE)? {
            if frame.tag != b'p' {
                return Err(Error::Unexpected {
                    tag: frame.tag,
                    context: "during authentication (expected a password message)",
                }
                .into());
            }
            return Ok(frame);
        }
        if read_more(stream, buf).await? == 0 {
            return Err(LoginError::Done);
        }
    }
}

/// Checks the client's password. `Ok(false)` means wrong password or unknown user.
async fn authenticate(
    stream: &mut Stream,
    buf: &mut BytesMut,
    auth_type: AuthType,
    secret: Option<&UserSecret>,
) -> Result<bool, LoginError> {
    match auth_type {
        AuthType::Trust => Ok(secret.is_some()),
        AuthType::Md5 => {
            let mut salt = [0u8; 4];
            rand::thread_rng().fill_bytes(&mut salt);
            stream
                .write_all(&messages::authentication_md5(salt))
                .await
                .map_err(Error::from)?;
            let frame = read_password_message(stream, buf).await?;
            let response = Reader::new(frame.body()).cstr()?;
            Ok(secret
                .and_then(|s| s.md5.as_deref())
                .is_some_and(|stored| md5::verify(stored, salt, response)))
        }
        AuthType::Scram => {
            stream
                .write_all(&messages::authentication_sasl())
                .await
                .map_err(Error::from)?;
            let frame = read_password_message(stream, buf).await?;
            let mut r = Reader::new(frame.body());
            let mechanism = r.cstr()?;
            if mechanism != "SCRAM-SHA-256" {
                return Err(Error::Malformed(
                    "unsupported SASL mechanism (pgdog offers SCRAM-SHA-256)",
                )
                .into());
            }
            let len = r.i32()?;
            let client_first = if len < 0 {
                &[][..]
            } else {
                r.bytes(len as usize)?
            };
            let scram = secret
                .and_then(|s| s.scram.clone())
                .unwrap_or_else(ScramSecret::impossible);
            let (exchange, server_first) =
                ScramExchange::start(scram, client_first).map_err(sasl_error)?;
            stream
                .write_all(&messages::authentication_sasl_continue(
                    server_first.as_bytes(),
                ))
                .await
                .map_err(Error::from)?;
            let frame = read_password_message(stream, buf).await?;
            match exchange.finish(frame.body()) {
                Ok(server_final) => {
                    stream
                        .write_all(&messages::authentication_sasl_final(
                            server_final.as_bytes(),
                        ))
                        .await
                        .map_err(Error::from)?;
                    Ok(secret.is_some())
                }
                Err(AuthError::WrongPassword) => Ok(false),
                Err(e) => Err(sasl_error(e)),
            }
        }
    }
}

fn sasl_error(e: AuthError) -> LoginError {
    match e {
        AuthError::WrongPassword => LoginError::Done,
        AuthError::Malformed(what) => LoginError::Net(Error::Malformed(what)),
    }
}
