//! [`TextCache`]: a bounded, thread-safe memo keyed by query text, shared by the router's caches
//! (read/write classification, sharding analyses) so the hot path parses each distinct text
//! once.

use dashmap::DashMap;

/// A memo of values by query text.
///
/// Holds about `capacity` texts at most: when full, an arbitrary half of the entries is dropped
/// before the next one goes in (amortised O(1) per insert, no bookkeeping on hits). Texts longer
/// than [`TextCache::MAX_TEXT_LEN`] bytes are not kept, so memory stays bounded by `capacity`
/// times that length.
#[derive(Debug)]
pub struct TextCache<V> {
    entries: DashMap<String, V>,
    capacity: usize,
}

impl<V: Clone> TextCache<V> {
    /// How many texts a cache keeps by default.
    pub const DEFAULT_CAPACITY: usize = 16 * 1024;
    /// Longest text (in bytes) that is kept.
    pub const MAX_TEXT_LEN: usize = 16 * 1024;

    /// An empty cache keeping at most `capacity` texts (at least one).
    pub fn new(capacity: usize) -> Self {
        TextCache {
            entries: DashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// The value remembered for `text`.
    pub fn get(&self, text: &str) -> Option<V> {
        self.entries.get(text).map(|hit| hit.value().clone())
    }

    /// Remembers `value` for `text` (unless the text is too long to keep).
    pub fn insert(&self, text: &str, value: V) {
        if text.len() > Self::MAX_TEXT_LEN {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(text) {
            let mut keep = true;
            self.entries.retain(|_, _| {
                keep = !keep;
                keep
            });
        }
        self.entries.insert(text.to_owned(), value);
    }

    /// How many texts are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no text is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets every text.
    pub fn clear(&self) {
        self.entries.clear();
    }
}
