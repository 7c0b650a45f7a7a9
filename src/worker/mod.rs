//! Workers (to come in this session).
