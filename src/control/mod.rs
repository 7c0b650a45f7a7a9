//! Control plane (to come in this session).
