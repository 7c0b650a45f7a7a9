//! I/O (to come in this session).
