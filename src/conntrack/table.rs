//! The flow table: every session under two keys, the key of its outbound
//! packets and the key of its inbound packets (as nf_conntrack's two tuple
//! hashes), shared by all workers because a reply may arrive on another queue.
//!
//! Keys are partly chosen by outsiders (remote address and port), so the hash
//! is keyed with a per-process random seed (`ahash::RandomState`).
//!
//! The table is split in shards, each a `hashbrown::HashTable` behind its own
//! reader-writer lock: a key is hashed once, the hash picks the shard and the
//! slot. Writes (insert, remove) happen under the NAT gateway's slow-path
//! lock, so a shard's write lock only ever waits for readers. Established
//! flows are carried from each worker's flow cache and do not come here.

use super::key::FlowKey;
use super::session::Session;
use super::tcp::Dir;
use hashbrown::HashTable;
use parking_lot::RwLock;
use std::sync::Arc;

/// Shards: enough that two workers rarely meet on one lock.
const SHARDS: usize = 64;

/// A shard's entries: a key and the session.
type Entries = HashTable<(FlowKey, Arc<Session>)>;

/// One shard, alone on its cache lines (its lock word is written by readers).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(RwLock<Entries>);

/// The shared table of sessions.
///
/// An entry is a key and the session (24 bytes): the direction a key stands
/// for is not stored but read off the session (its original key or not),
/// which a lookup touches anyway.
#[derive(Debug)]
pub struct FlowTable {
    hasher: ahash::RandomState,
    shards: Box<[Shard]>,
}

/// The direction `key` travels in `session`.
#[inline]
fn dir_of(session: &Session, key: &FlowKey) -> Dir {
    if session.orig == *key { Dir::Original } else { Dir::Reply }
}

impl FlowTable {
    /// A table with room for `n` keys before any shard grows.
    pub fn with_capacity(n: usize) -> FlowTable {
        let per_shard = n.div_ceil(SHARDS);
        FlowTable {
            hasher: ahash::RandomState::new(),
            shards: (0..SHARDS).map(|_| Shard(RwLock::new(HashTable::with_capacity(per_shard)))).collect(),
        }
    }

    /// The key's hash and its shard. The shard comes from bits the shard's
    /// own table does not use for the slot (low bits) or the tag (top 7).
    #[inline]
    fn locate(&self, key: &FlowKey) -> (u64, &RwLock<Entries>) {
        let h = self.hasher.hash_one(key);
        (h, &self.shards[(h >> 40) as usize % SHARDS].0)
    }

    /// Runs `f` on the session under `key` and the direction `key` stands
    /// for, under the shard's read lock, without touching a reference count.
    #[inline]
    pub fn with<R>(&self, key: &FlowKey, f: impl FnOnce(&Arc<Session>, Dir) -> R) -> Option<R> {
        let (h, shard) = self.locate(key);
        let shard = shard.read();
        shard.find(h, |(k, _)| k == key).map(|(k, s)| f(s, dir_of(s, k)))
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
            let (h, shard) = self.locate(&key);
            let mut shard = shard.write();
            let hasher = |(k, _): &(FlowKey, Arc<Session>)| self.hasher.hash_one(k);
            match shard.entry(h, |(k, _)| *k == key, hasher) {
                hashbrown::hash_table::Entry::Occupied(mut e) => e.get_mut().1 = session.clone(),
                hashbrown::hash_table::Entry::Vacant(e) => {
                    e.insert((key, session.clone()));
                }
            }
        }
    }

    /// Removes both keys of `session`, where they still point to it.
    pub fn remove(&self, session: &Arc<Session>) {
        for key in [session.orig, session.reply()] {
            let (h, shard) = self.locate(&key);
            let mut shard = shard.write();
            if let Ok(e) = shard.find_entry(h, |(k, s)| *k == key && Arc::ptr_eq(s, session)) {
                e.remove();
            }
        }
    }

    /// Every live session once (by its original key), for display.
    pub fn sessions(&self) -> Vec<Arc<Session>> {
        let mut v = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.0.read();
            v.extend(shard.iter().filter(|(k, s)| dir_of(s, k) == Dir::Original).map(|(_, s)| s.clone()));
        }
        v
    }

    /// The newest `limit` sessions that `keep` accepts, newest first, without
    /// the closing ones unless `with_closing` (for a page that must not list
    /// 100,000), and how many `keep` accepts and of those are closing.
    pub fn newest(&self, limit: usize, with_closing: bool, keep: impl Fn(&Session) -> bool) -> Page<Arc<Session>> {
        let mut v: Vec<Arc<Session>> = self.sessions().into_iter().filter(|s| keep(s)).collect();
        let live = v.len();
        let closing = v.iter().filter(|s| s.is_closing()).count();
        if !with_closing {
            v.retain(|s| !s.is_closing());
        }
        let newest_first = |a: &Arc<Session>, b: &Arc<Session>| b.created_secs.cmp(&a.created_secs);
        if v.len() > limit && limit > 0 {
            v.select_nth_unstable_by(limit - 1, newest_first);
        }
        v.truncate(limit);
        v.sort_by(newest_first);
        Page { live, closing, items: v }
    }
}

/// A bounded list of sessions and what it leaves out.
#[derive(Debug)]
pub struct Page<T> {
    /// Live sessions in all.
    pub live: usize,
    /// Of those, TCP ones after a FIN or a RST.
    pub closing: usize,
    pub items: Vec<T>,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { live: self.live, closing: self.closing, items: self.items.into_iter().map(f).collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

    fn session(i: u16) -> Arc<Session> {
        let k = FlowKey::new(17, Ipv4Addr::new(10, 0, 1, 10), 1024 + i, Ipv4Addr::new(198, 51, 100, 10), 53);
        Arc::new(Session::new(k, ([203, 0, 113, 5], 20000 + i), Dir::Original, 0))
    }

    #[test]
    fn both_keys_find_the_session_with_their_direction() {
        let t = FlowTable::with_capacity(16);
        let s = session(1);
        t.insert(&s);
        let (found, dir) = t.get(&s.orig).unwrap();
        assert!(Arc::ptr_eq(&found, &s) && dir == Dir::Original);
        let (found, dir) = t.get(&s.reply()).unwrap();
        assert!(Arc::ptr_eq(&found, &s) && dir == Dir::Reply);
        assert_eq!(t.sessions().len(), 1);
        // A removal only takes keys that still point to this session.
        let other = session(1);
        t.remove(&other);
        assert!(t.get(&s.orig).is_some());
        t.remove(&s);
        assert!(t.get(&s.orig).is_none() && t.get(&s.reply()).is_none());
        assert!(t.sessions().is_empty());
    }

    #[test]
    fn readers_on_other_threads_see_whole_sessions_while_the_table_grows_and_shrinks() {
        let t = Arc::new(FlowTable::with_capacity(64));
        let all: Vec<Arc<Session>> = (0..4000).map(session).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (t, stop, all) = (t.clone(), stop.clone(), all.clone());
                std::thread::spawn(move || {
                    let mut seen = 0u64;
                    while !stop.load(Relaxed) {
                        for s in &all {
                            if let Some((found, dir)) = t.get(&s.reply()) {
                                assert!(Arc::ptr_eq(&found, s));
                                assert_eq!(dir, Dir::Reply);
                                seen += 1;
                            }
                        }
                    }
                    seen
                })
            })
            .collect();
        for round in 0..20 {
            for s in &all {
                t.insert(s);
            }
            assert_eq!(t.sessions().len(), all.len(), "round {round}");
            for s in &all {
                t.remove(s);
            }
        }
        stop.store(true, Relaxed);
        for r in readers {
            r.join().unwrap();
        }
        assert!(t.sessions().is_empty());
        // Only the test's own references are left: the table kept none.
        assert!(all.iter().all(|s| Arc::strong_count(s) == 1));
    }
}
