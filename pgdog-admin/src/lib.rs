//! The admin database's command language: parsing the text an operator types into typed
//! [`Command`]s, and the [`ResultTable`] that `SHOW` commands return. Pure, no networking:
//! the pgdog binary executes the commands against its live state.

mod command;
mod lexer;
mod table;

pub use command::{
    edit_distance, parse, Command, CopyData, ParseError, SchemaSync, Show, SyncPhase, Verify,
    COMMANDS,
};
pub use table::{Column, ColumnType, ResultTable};
