//! The driver registry: network drivers by name. The built-in ones are registered at start;
//! names not known yet are asked of resolvers (plugin discovery) when first used, and what
//! they find is kept. Unknown names get an error listing what is available.

use crate::driver::NetworkDriver;
use crate::error::{BoxError, Error, Result};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// Finds drivers that appear after start (plugins), by name.
#[async_trait]
pub trait DriverResolver: Send + Sync {
    /// The driver called `name`, if this resolver can provide it now.
    async fn resolve(
        &self,
        name: &str,
    ) -> std::result::Result<Option<Arc<dyn NetworkDriver>>, BoxError>;

    /// The names it could provide now (for error messages).
    fn names(&self) -> Vec<String>;
}

/// Network drivers by name.
#[derive(Default)]
pub struct DriverRegistry {
    known: RwLock<BTreeMap<String, Arc<dyn NetworkDriver>>>,
    resolvers: Vec<Arc<dyn DriverResolver>>,
}

impl DriverRegistry {
    /// A registry of `drivers`, asking `resolvers` for names it does not know.
    pub fn new(
        drivers: Vec<Arc<dyn NetworkDriver>>,
        resolvers: Vec<Arc<dyn DriverResolver>>,
    ) -> Self {
        let known = drivers
            .into_iter()
            .map(|d| (d.name().to_owned(), d))
            .collect();
        DriverRegistry {
            known: RwLock::new(known),
            resolvers,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<dyn NetworkDriver>>> {
        // The map is whole after any insert: a poisoned lock still holds a valid map.
        self.known.read().unwrap_or_else(|p| p.into_inner())
    }

    /// A driver already known (registered, or resolved before).
    pub fn get(&self, name: &str) -> Result<Arc<dyn NetworkDriver>> {
        self.read()
            .get(name)
            .cloned()
            .ok_or_else(|| self.not_found(name))
    }

    /// The driver called `name`: a known one, or the first a resolver finds (then kept).
    pub async fn resolve(&self, name: &str) -> Result<Arc<dyn NetworkDriver>> {
        if let Ok(d) = self.get(name) {
            return Ok(d);
        }
        for r in &self.resolvers {
            match r.resolve(name).await {
                Ok(Some(d)) => {
                    let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
                    let d = known.entry(name.to_owned()).or_insert(d).clone();
                    return Ok(d);
                }
                Ok(None) => {}
                Err(source) => {
                    return Err(Error::Driver {
                        driver: name.to_owned(),
                        source,
                    })
                }
            }
        }
        Err(self.not_found(name))
    }

    /// The drivers known now (registered or resolved).
    pub fn known(&self) -> Vec<Arc<dyn NetworkDriver>> {
        self.read().values().cloned().collect()
    }

    /// Every name available now, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.read().keys().cloned().collect();
        for r in &self.resolvers {
            v.extend(r.names());
        }
        v.sort();
        v.dedup();
        v
    }

    fn not_found(&self, name: &str) -> Error {
        Error::DriverNotFound {
            driver: name.to_owned(),
            available: self.names().join(", "),
        }
    }
}
