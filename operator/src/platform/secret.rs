//! The installation's admin secret (see `cleave_proto::auth`): 32 random bytes from the
//! operating system, as hex. On the local platform it is the file `DATA/admin.secret` (mode
//! 0600), made on the first start and kept, so restarted nodes and routers keep accepting the
//! operator; on Kubernetes, the Secret `cleave-admin` in the operator's namespace. Nodes and
//! routers get it with `--auth-file`; the operator presents it on every admin connection
//! (`cleave_proto::auth::use_credential`).

use crate::error::{Error, Result};
use cleave_proto::auth::Secret;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A new random secret.
pub fn generate() -> Result<Secret> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(Error::io("/dev/urandom"))?;
    let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(Secret::new(&text).expect("64 hex digits make a valid secret"))
}

/// Read the secret at `path`, making it first when there is none.
pub fn ensure(path: &Path) -> Result<Secret> {
    if !path.exists() {
        let text = generate()?.expose().to_string();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(Error::io(path))?;
        f.write_all(format!("{text}\n").as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(Error::io(path))?;
    }
    Secret::load(path).map_err(|e| Error::State {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_secret_is_made_once_private_and_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.secret");
        let first = ensure(&path).unwrap();
        assert_eq!(first.expose().len(), 64);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(ensure(&path).unwrap(), first, "kept across restarts");
        let other = dir.path().join("other.secret");
        assert_ne!(ensure(&other).unwrap(), first);
    }
}
