//! The flow table: every session under two keys, the key of its outbound
//! packets and the key of its inbound packets (as nf_conntrack's two tuple
//! hashes), shared by all workers because a reply may arrive on another queue.
//!
//! Keys are partly chosen by outsiders (remote address and port), so the hash
//! is keyed with a per-process random seed (`ahash::RandomState`).

use super::key::FlowKey;
use super::session::Session;
use super::tcp::Dir;
use dashmap::DashMap;
use std::sync::Arc;

/// What a key points to: a session and the direction the key stands for.
#[derive(Clone, Debug)]
pub struct FlowRef {
    pub session: Arc<Session>,
    pub dir: Dir,
}

/// The shared table of sessions.
#[derive(Debug)]
pub struct FlowTable {
    map: DashMap<FlowKey, FlowRef, ahash::RandomState>,
}

impl FlowTable {
    pub fn with_capacity(n: usize) -> FlowTable {
        FlowTable { map: DashMap::with_capacity_and_hasher(n, ahash::RandomState::new()) }
    }

    /// Runs `f` on the entry for `key` while holding its shard's read lock, so
    /// the entry cannot be removed meanwhile and no reference count is touched.
    #[inline]
    pub fn with<R>(&self, key: &FlowKey, f: impl FnOnce(&FlowRef) -> R) -> Option<R> {
        self.map.get(key).map(|r| f(r.value()))
    }

    /// A clone of the entry for `key`.
    pub fn get(&self, key: &FlowKey) -> Option<FlowRef> {
        self.map.get(key).map(|r| r.value().clone())
    }

    /// Inserts both keys of a session. The caller holds the NAT's slow-path lock
    /// and has checked that neither key is taken by a live session.
    pub fn insert(&self, session: &Arc<Session>) {
        self.map.insert(session.orig, FlowRef { session: session.clone(), dir: Dir::Original });
        self.map.insert(session.reply, FlowRef { session: session.clone(), dir: Dir::Reply });
    }

    /// Removes both keys of `session`, where they still point to it.
    pub fn remove(&self, session: &Arc<Session>) {
        self.map.remove_if(&session.orig, |_, v| Arc::ptr_eq(&v.session, session));
        self.map.remove_if(&session.reply, |_, v| Arc::ptr_eq(&v.session, session));
    }

    /// Number of keys (two per session).
    pub fn key_count(&self) -> usize {
        self.map.len()
    }

    /// Every live session once (by its original key), for display.
    pub fn sessions(&self) -> Vec<Arc<Session>> {
        self.map.iter().filter(|e| e.value().dir == Dir::Original).map(|e| e.value().session.clone()).collect()
    }
}
