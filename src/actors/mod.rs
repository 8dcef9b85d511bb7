//! The actors and the pure logic they apply: registry → channel → session, with the pattern
//! routing, the req-repl subprotocol and a channel's `history` kept free of I/O.

pub mod channel;
pub mod history;
pub mod outbox;
pub mod pattern;
pub mod peers;
pub mod registry;
pub mod session;
pub mod subprotocol;
