//! Platforms: where the reconcile core's decisions become running processes.
//!
//! Each platform implements [`crate::reconcile::Platform`]. [`local`] runs redis-server,
//! cleave-node and cleave-router as child processes of the operator, with state in a data
//! folder. [`kubernetes`] runs them as StatefulSets and a Deployment through the API server.

pub mod kubernetes;
pub mod local;
pub mod secret;
