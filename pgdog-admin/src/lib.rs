//! The admin database's command language: parsing the text an operator types into a typed
//! command, and the result-table types that `SHOW` commands return. Pure, no networking.
//!
//! The admin database itself arrives with the operations work (SHOW POOLS, PAUSE, RELOAD, ...);
//! this crate holds its grammar so the resharding commands can extend one enum later.
