//! The operator's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in the operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A manifest file is not valid YAML.
    #[error("{file}: not valid YAML: {message}")]
    Yaml {
        /// File (and document) the error is in.
        file: String,
        /// What the parser said.
        message: String,
    },
    /// A manifest is YAML but not an acceptable object.
    #[error("{file}: {object}: {message}")]
    Manifest {
        /// File the object is in.
        file: String,
        /// `Kind/name`, or what is known of it.
        object: String,
        /// What is wrong.
        message: String,
    },
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A port the platform needs is taken by another program.
    #[error("port {port} ({what}) is already in use by another program: stop it (another Cleave?) or choose another port")]
    PortInUse {
        /// The port.
        port: u16,
        /// What it is for.
        what: String,
    },
    /// A binary the platform runs is missing.
    #[error("cannot find the {name} binary (looked in {}): build the workspace (`cargo build --workspace`) or pass --bin-dir", dir.display())]
    MissingBinary {
        /// Binary name.
        name: String,
        /// Where it looked.
        dir: PathBuf,
    },
    /// Another operator already runs on the same data folder.
    #[error("another cleave-operator (pid {pid}) is using {}", dir.display())]
    Locked {
        /// Its pid.
        pid: i32,
        /// The data folder.
        dir: PathBuf,
    },
    /// A node or router answered with an error, or could not be reached.
    #[error("{addr}: {source}")]
    Admin {
        /// Who was asked.
        addr: String,
        /// What went wrong.
        #[source]
        source: cleave_proto::Error,
    },
    /// A node or router did not answer in time.
    #[error("{addr}: no answer within {ms} ms")]
    Timeout {
        /// Who was asked.
        addr: String,
        /// How long we waited.
        ms: u64,
    },
    /// A state or status file could not be (de)serialized.
    #[error("{}: {message}", path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The epoch authority refused a write because someone else wrote since we read it (on
    /// Kubernetes: a `resourceVersion` precondition failed). Nothing was acted on; the next pass
    /// reads the new state and decides again.
    #[error("{what}: written by someone else since it was read ({message}); nothing acted on, the next pass re-reads it")]
    Conflict {
        /// What was being written.
        what: String,
        /// What the authority said.
        message: String,
    },
    /// A planned step was held back this pass because it is not safe yet.
    #[error("{what}: not yet: {why}")]
    NotYet {
        /// The step.
        what: String,
        /// Why it waits.
        why: String,
    },
    /// This operator may no longer act (its leader Lease is past its renew deadline).
    #[error("not acting: {why}")]
    NoAuthority {
        /// Why.
        why: String,
    },
    /// A Kubernetes API call failed (the API's status, code and reason stay in `source`, so
    /// callers can tell a conflict or a missing CRD from an outage).
    #[error("{what}: {source}")]
    Kube {
        /// The call.
        what: String,
        /// The client's error.
        source: Box<kube::Error>,
    },
    /// A child process could not be started or signalled.
    #[error("{what}: {message}")]
    Process {
        /// Which child.
        what: String,
        /// What went wrong.
        message: String,
    },
}

/// Result with the operator's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
