//! Connection tracking: flow keys and their reply, the shared flow table, the
//! TCP state machine and the timeout profiles.
//!
//! Guarantees: a session is found under either of its keys until it is reaped;
//! a reaped session is never revived by a late packet; timers are driven only
//! by the `now` passed in.

pub mod events;
pub mod key;
pub mod session;
pub mod table;
pub mod tcp;
pub mod timeouts;
pub mod tracker;
pub mod wheel;

pub use key::{Endpoint, FlowKey};
pub use session::{Rewrite, Session, SessionView};
pub use table::FlowTable;
pub use tcp::{Dir, TcpState};
pub use timeouts::{Profile, Timeouts};
pub use tracker::{TrackError, Tracker};
