//! One value per key, shared by whoever uses that key at the moment: per-endpoint delivery
//! limits, per-signature claim gates. Keys can be endless (a callback URL per operation),
//! so values nobody holds any more are forgotten once enough keys are remembered.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// Keys remembered before the values nobody holds are forgotten.
pub const KEPT_BEFORE_PRUNING: usize = 256;

pub struct SharedByKey<K, V> {
    values: Mutex<HashMap<K, Arc<V>>>,
}

impl<K, V> Default for SharedByKey<K, V> {
    fn default() -> Self {
        SharedByKey {
            values: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash, V> SharedByKey<K, V> {
    /// The value for `key`, made by `new` if nobody holds one. A value is dropped only
    /// while no clone of it is out (no permit of a semaphore, no waiter at a gate), so
    /// whoever shares a key always shares one value.
    pub fn get<Q>(&self, key: &Q, new: impl FnOnce() -> V) -> Arc<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let mut values = self.values.lock().expect("shared values");
        if let Some(value) = values.get(key) {
            return value.clone();
        }
        if values.len() >= KEPT_BEFORE_PRUNING {
            values.retain(|_, value| Arc::strong_count(value) > 1);
        }
        let value = Arc::new(new());
        values.insert(key.to_owned(), value.clone());
        value
    }

    pub fn len(&self) -> usize {
        self.values.lock().expect("shared values").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_shares_one_value() {
        let shared: SharedByKey<String, u8> = SharedByKey::default();
        let first = shared.get("a", || 1);
        assert!(Arc::ptr_eq(&first, &shared.get("a", || 2)));
        assert!(!Arc::ptr_eq(&first, &shared.get("b", || 1)));
    }

    #[test]
    fn values_nobody_holds_are_forgotten_and_held_ones_kept() {
        let shared: SharedByKey<String, usize> = SharedByKey::default();
        let held = shared.get("held", || 0);
        for i in 0..KEPT_BEFORE_PRUNING * 3 {
            shared.get(format!("key {i}").as_str(), || i);
        }
        assert!(shared.len() <= KEPT_BEFORE_PRUNING + 1, "{}", shared.len());
        assert!(Arc::ptr_eq(&held, &shared.get("held", || 1)));
    }
}
