//! pgdog-admin
