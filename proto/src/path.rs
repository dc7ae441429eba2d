//! File paths: validated once at the edge, trusted everywhere after.
//!
//! A path is `/root/dir/.../name`. The *root* (first segment) plays the role of an S3 bucket:
//! its hash picks the cluster. Paths are absolute and normalised — no `.`/`..`, no empty
//! segments, no trailing slash — so one file has exactly one spelling and one owner.

use crate::error::{ErrorCode, Reply};
use std::fmt;

/// Longest accepted path, in bytes.
pub const MAX_PATH_LEN: usize = 1024;
/// Longest accepted segment, in bytes.
pub const MAX_SEGMENT_LEN: usize = 255;

/// A validated absolute path with at least one segment.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FilePath(String);

impl FilePath {
    /// Validate raw bytes from the wire.
    pub fn from_bytes(raw: &[u8]) -> Result<Self, Reply> {
        let s = std::str::from_utf8(raw).map_err(|_| bad("path is not valid UTF-8"))?;
        FilePath::parse(s)
    }

    /// Validate a string.
    pub fn parse(s: &str) -> Result<Self, Reply> {
        if s.len() > MAX_PATH_LEN {
            return Err(bad(format!(
                "path is {} bytes, longer than {MAX_PATH_LEN}",
                s.len()
            )));
        }
        let Some(rest) = s.strip_prefix('/') else {
            return Err(bad(format!(
                "path {s:?} is not absolute (must start with /)"
            )));
        };
        if rest.is_empty() {
            return Err(bad("path / names no root; use /root/..."));
        }
        for seg in rest.split('/') {
            match seg {
                "" => return Err(bad(format!("path {s:?} has an empty segment"))),
                "." | ".." => return Err(bad(format!("path {s:?} has a {seg:?} segment"))),
                _ if seg.len() > MAX_SEGMENT_LEN => {
                    return Err(bad(format!(
                        "a segment of {s:?} is longer than {MAX_SEGMENT_LEN}"
                    )))
                }
                _ if seg.chars().any(char::is_control) => {
                    return Err(bad(format!("path {s:?} contains a control character")))
                }
                _ => {}
            }
        }
        Ok(FilePath(s.to_string()))
    }

    /// The full path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first segment, whose hash selects the owning cluster.
    pub fn root(&self) -> &str {
        let rest = &self.0[1..];
        rest.split('/').next().unwrap_or(rest)
    }

    /// The routing hash of this path's root.
    pub fn hash(&self) -> u32 {
        crate::hash::hash_root(self.root())
    }

    /// The parent directory, or `None` for a root (`/photos`).
    pub fn parent(&self) -> Option<FilePath> {
        let i = self.0.rfind('/')?;
        (i > 0).then(|| FilePath(self.0[..i].to_string()))
    }

    /// The last segment.
    pub fn name(&self) -> &str {
        &self.0[self.0.rfind('/').map_or(0, |i| i + 1)..]
    }

    /// Every ancestor from the root down, excluding this path.
    pub fn ancestors(&self) -> Vec<FilePath> {
        let mut out = vec![];
        let mut cur = self.parent();
        while let Some(p) = cur {
            cur = p.parent();
            out.push(p);
        }
        out.reverse();
        out
    }
}

fn bad(msg: impl Into<String>) -> Reply {
    Reply::new(ErrorCode::BadPath, msg)
}

impl fmt::Display for FilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for FilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_normal_paths() {
        let p = FilePath::parse("/photos/2024/cat.jpg").unwrap();
        assert_eq!(p.root(), "photos");
        assert_eq!(p.name(), "cat.jpg");
        assert_eq!(p.parent().unwrap().as_str(), "/photos/2024");
        let anc: Vec<_> = p.ancestors().iter().map(|a| a.to_string()).collect();
        assert_eq!(anc, ["/photos", "/photos/2024"]);
        assert_eq!(FilePath::parse("/photos").unwrap().parent(), None);
        assert!(FilePath::parse("/ünï/çødé file.txt").is_ok());
    }

    #[test]
    fn refuses_bad_paths_with_badpath() {
        let long = format!("/{}", "a/".repeat(600));
        let long_seg = format!("/{}", "x".repeat(300));
        for bad in [
            "",
            "relative/x",
            "/",
            "//x",
            "/a//b",
            "/a/",
            "/a/./b",
            "/a/../b",
            "/..",
            "/a\0b",
            "/a\nb",
            &long,
            &long_seg,
        ] {
            let err = FilePath::parse(bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::BadPath, "{bad:?}");
        }
        assert_eq!(
            FilePath::from_bytes(b"/a/\xff").unwrap_err().code,
            ErrorCode::BadPath
        );
    }
}
