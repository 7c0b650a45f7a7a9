//! The flow table: every session under two keys, the key of its outbound
//! packets and the key of its inbound packets (as nf_conntrack's two tuple
//! hashes), shared by all workers because a reply may arrive on another queue.
//!
//! Keys are partly chosen by outsiders (remote address and port), so the hash
//! is keyed with a per-process random seed (`ahash::RandomState`).

use super::key::FlowKey;
use super::session::Session;
use super::tcp::Dir;
use scc::HashIndex;
use std::sync::Arc;

/// The shared table of sessions.
///
/// Reads take no lock and write no shared memory; writes (insert, remove)
/// happen under the NAT gateway's slow-path lock. A reader may see an entry
/// being removed: the session it points to is then dead (its `last_seen`
/// says so), and the reader treats it as gone.
///
/// An entry is a key and the session (24 bytes): the direction a key stands
/// for is not stored but read off the session (its original key or not),
/// which a lookup touches anyway.
#[derive(Debug)]
pub struct FlowTable {
    map: HashIndex<FlowKey, Arc<Session>, ahash::RandomState>,
}

/// The direction `key` travels in `session`.
#[inline]
fn dir_of(session: &Session, key: &FlowKey) -> Dir {
    if session.orig == *key { Dir::Original } else { Dir::Reply }
}

impl FlowTable {
    pub fn with_capacity(n: usize) -> FlowTable {
        FlowTable { map: HashIndex::with_capacity_and_hasher(n, ahash::RandomState::new()) }
    }

    /// Runs `f` on the session under `key` and the direction `key` stands
    /// for, without a lock and without touching a reference count.
    #[inline]
    pub fn with<R>(&self, key: &FlowKey, f: impl FnOnce(&Arc<Session>, Dir) -> R) -> Option<R> {
        self.map.peek_with(key, |k, s| f(s, dir_of(s, k)))
    }

    /// The session under `key` and the direction `key` stands for.
    pub fn get(&self, key: &FlowKey) -> Option<(Arc<Session>, Dir)> {
        self.with(key, |s, dir| (s.clone(), dir))
    }

    /// Inserts both keys of a session. The caller holds the NAT's slow-path lock
    /// and has removed any dead session under these keys; a key still taken
    /// (which that lock rules out) is replaced.
    pub fn insert(&self, session: &Arc<Session>) {
        for key in [session.orig, session.reply()] {
            if let Err((k, r)) = self.map.insert_sync(key, session.clone()) {
                self.map.remove_sync(&k);
                let _ = self.map.insert_sync(k, r);
            }
        }
    }

    /// Removes both keys of `session`, where they still point to it.
    pub fn remove(&self, session: &Arc<Session>) {
        self.map.remove_if_sync(&session.orig, |v| Arc::ptr_eq(v, session));
        self.map.remove_if_sync(&session.reply(), |v| Arc::ptr_eq(v, session));
    }

    /// Every live session once (by its original key), for display.
    pub fn sessions(&self) -> Vec<Arc<Session>> {
        let guard = scc::Guard::new();
        self.map.iter(&guard).filter(|(k, v)| dir_of(v, k) == Dir::Original).map(|(_, v)| v.clone()).collect()
    }
}
