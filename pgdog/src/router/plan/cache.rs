//! [`PlanCache`]: analyses by query text, so each distinct text is parsed once per database
//! cluster.

use std::sync::Arc;

use super::{Analysis, ShardingSchema};
use crate::router::text_cache::TextCache;

/// Cache of analyses by SQL text. One per database cluster.
///
/// Bounded like every [`TextCache`]; an analysis made with other sharding rules (a reload
/// changed them) is made again.
#[derive(Debug)]
pub struct PlanCache {
    entries: TextCache<Arc<Analysis>>,
}

impl PlanCache {
    /// How many texts [`PlanCache::default`] keeps.
    pub const DEFAULT_CAPACITY: usize = TextCache::<Arc<Analysis>>::DEFAULT_CAPACITY;
    /// Longest text (in bytes) that is kept.
    pub const MAX_TEXT_LEN: usize = TextCache::<Arc<Analysis>>::MAX_TEXT_LEN;

    /// An empty cache keeping at most `capacity` texts (at least one).
    pub fn new(capacity: usize) -> Self {
        PlanCache {
            entries: TextCache::new(capacity),
        }
    }

    /// The analysis of `sql` with the rules of `schema`, from the cache or made (and then
    /// remembered).
    pub fn get(&self, sql: &str, schema: &ShardingSchema) -> Arc<Analysis> {
        if let Some(hit) = self.entries.get(sql) {
            if hit.schema_id() == schema.id() {
                return hit;
            }
        }
        let analysis = Arc::new(Analysis::analyze(sql, schema));
        self.entries.insert(sql, Arc::clone(&analysis));
        analysis
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

impl Default for PlanCache {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(shards: usize) -> ShardingSchema {
        let mut text = String::new();
        for shard in 0..shards {
            text.push_str(&format!("[[databases]]\nname = \"db\"\nshard = {shard}\n"));
        }
        text.push_str("[[sharded_tables]]\ndatabase = \"db\"\nname = \"t\"\ncolumn = \"id\"\n");
        let config = pgdog_config::Config::from_str(&text, "pgdog.toml").unwrap();
        ShardingSchema::new(&config, "db")
    }

    #[test]
    fn hits_and_bounds() {
        let rules = schema(2);
        let cache = PlanCache::new(4);
        let first = cache.get("SELECT * FROM t WHERE id = $1", &rules);
        let again = cache.get("SELECT * FROM t WHERE id = $1", &rules);
        assert!(Arc::ptr_eq(&first, &again));
        for i in 0..50 {
            cache.get(&format!("SELECT {i}"), &rules);
            assert!(cache.len() <= 4);
        }
        let long = format!("SELECT '{}'", "x".repeat(PlanCache::MAX_TEXT_LEN));
        cache.get(&long, &rules);
        assert!(cache.entries.get(&long).is_none());
        cache.clear();
        assert!(cache.is_empty());
    }

    #[test]
    fn other_rules_make_a_new_analysis() {
        let two = schema(2);
        let three = schema(3);
        assert_ne!(two.id(), three.id());
        assert_eq!(two.id(), schema(2).id());
        let cache = PlanCache::default();
        let first = cache.get("SELECT 1", &two);
        let other = cache.get("SELECT 1", &three);
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(other.schema_id(), three.id());
        assert_eq!(cache.len(), 1);
    }
}
