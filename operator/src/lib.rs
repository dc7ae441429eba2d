//! `cleave-operator`: runs Cleave from FileCluster and HashRange objects.
//!
//! - [`crd`]: the custom resources (the source of truth for `crds/*.yaml`) and how manifests
//!   are read and checked (schema and CEL, locally);
//! - [`reconcile`]: the platform-agnostic core — fetch → validate → build (pure) → apply →
//!   status — and the [`reconcile::Platform`] trait it drives;
//! - [`platform`]: the platforms: [`platform::local`] runs everything as child processes on
//!   this machine.

pub mod crd;
pub mod error;
pub mod platform;
pub mod reconcile;

pub use error::{Error, Result};
