//! The agent protocol, shared by both ends: one JSON object per line, one request then one
//! response, over the SSH channel's stdin/stdout. The first exchange is `hello`.
//!
//! Both ends treat the other as hostile: lines are size-limited before they are parsed
//! ([`framing`]), requests are validated into typed names, and unknown fields or ops are refused
//! ([`message`]). Bottom layer: it imports only `names` and `text`, so the agent, the installer
//! and the engines above can all speak it without importing each other.

pub mod framing;
pub mod message;
pub mod payload;

pub use framing::{
    read_line_limited, read_line_limited_async, LineError, MAX_REQUEST_LINE, MAX_RESPONSE_LINE,
};
pub use message::{
    parse_request, Announced, CommitOutcome, Committed, ErrorKind, Request, Response, BATCH_OP,
    DISCARD_OP, OPS, PROTOCOL_VERSION,
};
pub use payload::{
    ConfigExposure, Installed, LineageFiles, LineageStatus, RenewalBundle, SplitBrainKept,
};
