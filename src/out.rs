//! hako's own output on stdout (`state`, `list`, `ps`, `features`), written the way runc's is:
//! quietly ended by SIGPIPE when the reader has gone. The writer lives in
//! [`hako_contract::stdout`], which `hako bench` shares.

pub use hako_contract::stdout::line;
