//! The newest log entries, kept in memory so live followers are fed without a Redis round trip.
//! Bounded by entries and bytes; older entries are read from the Redis log.

use crate::store::Entry;
use std::collections::VecDeque;

/// Memory the cache may hold.
const CACHE_MAX_BYTES: usize = 32 * 1024 * 1024;

/// A contiguous run of the newest entries.
#[derive(Debug, Default)]
pub struct LogCache {
    entries: VecDeque<Entry>,
    bytes: usize,
    max_entries: usize,
}

impl LogCache {
    /// An empty cache holding at most `max_entries`.
    pub fn new(max_entries: usize) -> Self {
        LogCache {
            entries: VecDeque::new(),
            bytes: 0,
            max_entries: max_entries.max(1),
        }
    }

    /// Forget everything (role change).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Append the next entry; a non-contiguous entry restarts the cache.
    pub fn push(&mut self, entry: Entry) {
        if self
            .entries
            .back()
            .is_some_and(|last| last.seq + 1 != entry.seq)
        {
            self.clear();
        }
        self.bytes += entry.size();
        self.entries.push_back(entry);
        while self.entries.len() > self.max_entries
            || (self.bytes > CACHE_MAX_BYTES && self.entries.len() > 1)
        {
            if let Some(e) = self.entries.pop_front() {
                self.bytes -= e.size();
            }
        }
    }

    /// The epoch of the entry at `seq`, if the cache holds it.
    pub fn epoch_at(&self, seq: u64) -> Option<u64> {
        let first = self.entries.front()?.seq;
        let i = seq.checked_sub(first)? as usize;
        self.entries.get(i).map(|e| e.epoch)
    }

    /// Entries after `from`, up to about `max_bytes` (at least one). `None` if the cache does
    /// not reach back to `from + 1`.
    pub fn after(&self, from: u64, max_bytes: usize) -> Option<Vec<Entry>> {
        let first = self.entries.front()?.seq;
        if from + 1 < first {
            return None;
        }
        let skip = (from + 1 - first) as usize;
        let mut out = vec![];
        let mut size = 0;
        for e in self.entries.iter().skip(skip) {
            if !out.is_empty() && size + e.size() > max_bytes {
                break;
            }
            size += e.size();
            out.push(e.clone());
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn entry(seq: u64, size: usize) -> Entry {
        Entry {
            epoch: 1,
            seq,
            op: Bytes::from(vec![0; size]),
            fx: Bytes::new(),
        }
    }

    #[test]
    fn serves_contiguous_tail_and_bounds_itself() {
        let mut c = LogCache::new(3);
        for s in 1..=5 {
            c.push(entry(s, 10));
        }
        assert!(c.after(1, 100).is_none(), "entry 2 was evicted");
        let got: Vec<u64> = c.after(2, 1000).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(got, [3, 4, 5]);
        assert!(c.after(5, 100).unwrap().is_empty());
        assert_eq!(c.epoch_at(3), Some(1));
        assert_eq!(c.epoch_at(2), None, "evicted");
        let got: Vec<u64> = c.after(2, 50).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(got, [3], "byte budget");
        c.push(entry(9, 1));
        assert!(c.after(4, 100).is_none(), "a jump restarts the cache");
    }
}
