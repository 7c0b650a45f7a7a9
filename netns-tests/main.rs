//! Real-namespace tests (to come).
