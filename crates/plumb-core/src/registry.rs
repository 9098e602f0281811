//! Registries of network drivers and IPAM drivers by name. The built-in ones are registered
//! at start; names not known yet are asked of resolvers (plugin discovery) when first used,
//! and what they find is kept.

use crate::driver::NetworkDriver;
use crate::error::BoxError;
use crate::ipam_driver::Ipam;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// Something a registry holds: it knows its own name.
pub trait Named: Send + Sync {
    /// The name users give it.
    fn registry_name(&self) -> &str;
}

impl Named for dyn NetworkDriver {
    fn registry_name(&self) -> &str {
        self.name()
    }
}

impl Named for dyn Ipam {
    fn registry_name(&self) -> &str {
        self.name()
    }
}

/// Finds things that appear after start (plugins), by name.
#[async_trait]
pub trait Resolver<T: ?Sized>: Send + Sync {
    /// The one called `name`, if this resolver can provide it now.
    async fn resolve(&self, name: &str) -> Result<Option<Arc<T>>, BoxError>;

    /// The names it could provide now (for error messages).
    fn names(&self) -> Vec<String>;
}

/// Finds network drivers that appear after start.
pub type DriverResolver = dyn Resolver<dyn NetworkDriver>;
/// Finds IPAM drivers that appear after start.
pub type IpamResolver = dyn Resolver<dyn Ipam>;

/// Why a name could not be resolved.
#[derive(Debug)]
pub enum Unresolved {
    /// Nobody provides it; the names available now are given, sorted.
    NotFound(Vec<String>),
    /// A resolver failed while looking (a plugin that answered badly).
    Failed(BoxError),
}

/// Things by name: registered ones and those resolvers found.
pub struct Registry<T: ?Sized> {
    known: RwLock<BTreeMap<String, Arc<T>>>,
    resolvers: Vec<Arc<dyn Resolver<T>>>,
}

impl<T: ?Sized + Named> Registry<T> {
    /// A registry of `items`, asking `resolvers` for names it does not know.
    pub fn new(items: Vec<Arc<T>>, resolvers: Vec<Arc<dyn Resolver<T>>>) -> Self {
        let known = items
            .into_iter()
            .map(|d| (d.registry_name().to_owned(), d))
            .collect();
        Registry {
            known: RwLock::new(known),
            resolvers,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<T>>> {
        // The map is whole after any insert: a poisoned lock still holds a valid map.
        self.known.read().unwrap_or_else(|p| p.into_inner())
    }

    /// One already known (registered, or resolved before).
    pub fn get(&self, name: &str) -> Option<Arc<T>> {
        self.read().get(name).cloned()
    }

    /// The one called `name`: a known one, or the first a resolver finds (then kept).
    pub async fn resolve(&self, name: &str) -> Result<Arc<T>, Unresolved> {
        if let Some(d) = self.get(name) {
            return Ok(d);
        }
        for r in &self.resolvers {
            match r.resolve(name).await {
                Ok(Some(d)) => {
                    let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
                    return Ok(known.entry(name.to_owned()).or_insert(d).clone());
                }
                Ok(None) => {}
                Err(e) => return Err(Unresolved::Failed(e)),
            }
        }
        Err(Unresolved::NotFound(self.names()))
    }

    /// Those known now (registered or resolved).
    pub fn known(&self) -> Vec<Arc<T>> {
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
}
