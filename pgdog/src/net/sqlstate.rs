//! SQLSTATE codes pgdog sends in its own `ErrorResponse`s, named as in the PostgreSQL docs.

/// 08P01: malformed, truncated or unexpected protocol messages.
pub const PROTOCOL_VIOLATION: &str = "08P01";
/// 08006: a server connection failed mid-query.
pub const CONNECTION_FAILURE: &str = "08006";
/// 08001: pgdog could not connect to the server.
pub const CLIENT_UNABLE_TO_ESTABLISH_CONNECTION: &str = "08001";
/// 28P01: wrong password or unknown user.
pub const INVALID_PASSWORD: &str = "28P01";
/// 28000: authentication method not acceptable.
pub const INVALID_AUTHORIZATION_SPECIFICATION: &str = "28000";
/// 3D000: unknown database.
pub const INVALID_CATALOG_NAME: &str = "3D000";
/// 53300: pool exhausted (no server connection within checkout_timeout).
pub const TOO_MANY_CONNECTIONS: &str = "53300";
/// 57P01: pgdog is shutting down.
pub const ADMIN_SHUTDOWN: &str = "57P01";
/// 57014: query canceled (query_timeout).
pub const QUERY_CANCELED: &str = "57014";
/// 0A000: feature not supported (e.g. GSSAPI encryption, unsupported protocol version).
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
/// 58000: system error (e.g. a TLS handshake failure).
pub const SYSTEM_ERROR: &str = "58000";
/// 57P05: an idle client timed out (client_idle_timeout).
pub const IDLE_SESSION_TIMEOUT: &str = "57P05";
/// XX000: internal error.
pub const INTERNAL_ERROR: &str = "XX000";
/// `syntax_error`
pub const SYNTAX_ERROR: &str = "42601";
/// `undefined_object`
pub const UNDEFINED_OBJECT: &str = "42704";
/// `undefined_table`
pub const UNDEFINED_TABLE: &str = "42P01";
/// `invalid_parameter_value`
pub const INVALID_PARAMETER_VALUE: &str = "22023";
/// `cant_change_runtime_param`
pub const CANT_CHANGE_RUNTIME_PARAM: &str = "55P02";
/// `lock_not_available`
pub const LOCK_NOT_AVAILABLE: &str = "55P03";
/// `config_file_error`
pub const CONFIG_FILE_ERROR: &str = "F0000";
/// `invalid_text_representation` (e.g. a bad number in a COPY row's sharding key)
pub const INVALID_TEXT_REPRESENTATION: &str = "22P02";
/// `invalid_binary_representation` (a binary COPY field of the wrong size for its type)
pub const INVALID_BINARY_REPRESENTATION: &str = "22P03";
/// `bad_copy_file_format` (malformed COPY data)
pub const BAD_COPY_FILE_FORMAT: &str = "22P04";
/// `numeric_value_out_of_range`
pub const NUMERIC_VALUE_OUT_OF_RANGE: &str = "22003";
/// `character_not_in_repertoire` (invalid UTF-8)
pub const CHARACTER_NOT_IN_REPERTOIRE: &str = "22021";
/// `in_failed_sql_transaction`
pub const IN_FAILED_SQL_TRANSACTION: &str = "25P02";
/// `active_sql_transaction`
pub const ACTIVE_SQL_TRANSACTION: &str = "25001";
/// `no_active_sql_transaction`
pub const NO_ACTIVE_SQL_TRANSACTION: &str = "25P01";
/// `invalid_sql_statement_name` (unknown prepared statement)
pub const INVALID_SQL_STATEMENT_NAME: &str = "26000";
/// `invalid_cursor_name` (unknown portal)
pub const INVALID_CURSOR_NAME: &str = "34000";
/// `transaction_rollback`
pub const TRANSACTION_ROLLBACK: &str = "40000";
/// `check_violation` (no shard's mapping rule takes a sharding key value, like no partition)
pub const CHECK_VIOLATION: &str = "23514";
/// `invalid_row_count_in_limit_clause`
pub const INVALID_ROW_COUNT_IN_LIMIT_CLAUSE: &str = "2201W";
/// `invalid_row_count_in_result_offset_clause`
pub const INVALID_ROW_COUNT_IN_RESULT_OFFSET_CLAUSE: &str = "2201X";
/// `invalid_column_reference` (ORDER BY position not in the select list)
pub const INVALID_COLUMN_REFERENCE: &str = "42P10";
/// `read_only_sql_transaction`
pub const READ_ONLY_SQL_TRANSACTION: &str = "25006";
/// `object_not_in_prerequisite_state` (e.g. stopping a task that has already ended)
pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
/// insufficient_privilege
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
