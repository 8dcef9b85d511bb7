//! The actors and the pure logic they apply: registry → channel → session, with the pattern
//! routing and the req-repl subprotocol kept free of I/O.

pub mod channel;
pub mod outbox;
pub mod pattern;
pub mod peers;
pub mod registry;
pub mod session;
pub mod subprotocol;
