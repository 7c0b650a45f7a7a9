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

/// What a key points to: a session and the direction the key stands for.
#[derive(Clone, Debug)]
pub struct FlowRef {
    pub session: Arc<Session>,
    pub dir: Dir,
}

/// The shared table of sessions.
///
/// Reads take no lock and write no shared memory; writes (insert, remove)
/// happen under the NAT gateway's slow-path lock. A reader may see an entry
/// being removed: the session it points to is then dead (its `last_seen`
/// says so), and the reader treats it as gone.
#[derive(Debug)]
pub struct FlowTable {
    map: HashIndex<FlowKey, FlowRef, ahash::RandomState>,
}

impl FlowTable {
    pub fn with_capacity(n: usize) -> FlowTable {
        FlowTable { map: HashIndex::with_capacity_and_hasher(n, ahash::RandomState::new()) }
    }

    /// Runs `f` on the entry for `key`, without a lock and without touching a
    /// reference count.
    #[inline]
    pub fn with<R>(&self, key: &FlowKey, f: impl FnOnce(&FlowRef) -> R) -> Option<R> {
        self.map.peek_with(key, |_, v| f(v))
    }

    /// A clone of the entry for `key`.
    pub fn get(&self, key: &FlowKey) -> Option<FlowRef> {
        self.map.peek_with(key, |_, v| v.clone())
    }

    /// Inserts both keys of a session. The caller holds the NAT's slow-path lock
    /// and has removed any dead session under these keys; a key still taken
    /// (which that lock rules out) is replaced.
    pub fn insert(&self, session: &Arc<Session>) {
        for (key, dir) in [(session.orig, Dir::Original), (session.reply, Dir::Reply)] {
            let r = FlowRef { session: session.clone(), dir };
            if let Err((k, r)) = self.map.insert_sync(key, r) {
                self.map.remove_sync(&k);
                let _ = self.map.insert_sync(k, r);
            }
        }
    }

    /// Removes both keys of `session`, where they still point to it.
    pub fn remove(&self, session: &Arc<Session>) {
        self.map.remove_if_sync(&session.orig, |v| Arc::ptr_eq(&v.session, session));
        self.map.remove_if_sync(&session.reply, |v| Arc::ptr_eq(&v.session, session));
    }

    /// Every live session once (by its original key), for display.
    pub fn sessions(&self) -> Vec<Arc<Session>> {
        let guard = scc::Guard::new();
        self.map.iter(&guard).filter(|(_, v)| v.dir == Dir::Original).map(|(_, v)| v.session.clone()).collect()
    }
}
