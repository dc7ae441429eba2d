//! Property tests of [`FilePath`]: valid paths are accepted unchanged and their parts agree
//! with a naive model; everything else is refused with `BADPATH`, never a panic.

mod strategies;

use cleave_proto::hash::hash_root;
use cleave_proto::path::{MAX_PATH_LEN, MAX_SEGMENT_LEN};
use cleave_proto::{ErrorCode, FilePath};
use proptest::collection::vec;
use proptest::prelude::*;
use strategies::{file_path, segment, segments};

/// The rules of `crate::path`, written independently: absolute, at least one segment, no empty,
/// `.` or `..` segment, segments of at most 255 bytes without control characters, at most 1024
/// bytes in all.
fn model_accepts(s: &str) -> bool {
    s.len() <= MAX_PATH_LEN
        && s.starts_with('/')
        && s[1..].split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.len() <= MAX_SEGMENT_LEN
                && !seg.chars().any(char::is_control)
        })
}

fn check(s: &str) {
    match FilePath::parse(s) {
        Ok(p) => {
            assert!(model_accepts(s), "accepted {s:?}, which the rules refuse");
            assert_eq!(p.as_str(), s, "a valid path is kept as spelled");
        }
        Err(e) => {
            assert!(
                !model_accepts(s),
                "refused {s:?} ({e}), which the rules accept"
            );
            assert_eq!(e.code, ErrorCode::BadPath, "{s:?}: {e}");
            assert!(!e.message.is_empty());
        }
    }
}

proptest! {
    /// A path built from valid segments is accepted as spelled, and root, name, parent,
    /// ancestors and hash follow from the segments.
    #[test]
    fn valid_paths_round_trip(segs in segments()) {
        let s = format!("/{}", segs.join("/"));
        let p = FilePath::parse(&s).unwrap();
        prop_assert_eq!(p.as_str(), &s);
        prop_assert_eq!(p.to_string(), s.clone());
        prop_assert_eq!(FilePath::from_bytes(s.as_bytes()).unwrap(), p.clone());
        prop_assert_eq!(p.root(), segs[0].as_str());
        prop_assert_eq!(p.name(), segs.last().unwrap().as_str());
        prop_assert_eq!(p.hash(), hash_root(&segs[0]));
        let parent = p.parent().map(|q| q.to_string());
        let expected_parent = (segs.len() > 1).then(|| format!("/{}", segs[..segs.len() - 1].join("/")));
        prop_assert_eq!(parent, expected_parent);
        let ancestors: Vec<String> = p.ancestors().iter().map(|a| a.to_string()).collect();
        let expected: Vec<String> = (1..segs.len()).map(|n| format!("/{}", segs[..n].join("/"))).collect();
        prop_assert_eq!(ancestors, expected);
        for a in p.ancestors() {
            prop_assert_eq!(a.root(), p.root(), "an ancestor routes like the path");
        }
    }

    /// Arbitrary strings, and strings made of path-like pieces: accepted exactly when the model
    /// accepts, refused with BADPATH otherwise.
    #[test]
    fn arbitrary_strings_match_the_model(s in "\\PC{0,12}|[/a.\\x00\\n\\u{85} ]{0,12}") {
        check(&s);
    }

    /// Valid paths with one defect spliced in are refused.
    #[test]
    fn defects_are_refused(
        segs in segments(),
        at in any::<prop::sample::Index>(),
        defect in prop::sample::select(vec!["//", "/./", "/../", "\0", "\n", "\r", "\u{7f}", "\u{85}"]),
    ) {
        let s = format!("/{}", segs.join("/"));
        let i = at.index(s.len() + 1);
        let i = (0..=i).rev().find(|i| s.is_char_boundary(*i)).unwrap();
        let bad = format!("{}{}{}", &s[..i], defect, &s[i..]);
        check(&bad);
        prop_assert!(FilePath::parse(&bad).is_err(), "accepted {:?}", bad);
        // Also as a suffix / trailing slash and without the leading slash.
        let trailing = format!("{s}/");
        check(&trailing);
        check(&s[1..]);
        prop_assert!(FilePath::parse(&trailing).is_err());
        prop_assert!(FilePath::parse(&s[1..]).is_err());
    }

    /// Lengths at and around the limits.
    #[test]
    fn length_limits_are_exact(seg in segment(), extra in 0usize..3, n in 1usize..300) {
        let long_seg = format!("/{}", "x".repeat(MAX_SEGMENT_LEN - 1 + extra));
        check(&long_seg);
        prop_assert_eq!(FilePath::parse(&long_seg).is_ok(), extra <= 1);
        let long_path = format!("/{}", vec![seg.as_str(); n].join("/"));
        check(&long_path);
    }

    /// Arbitrary bytes from the wire: no panic; refused with BADPATH unless valid UTF-8 that the
    /// model accepts.
    #[test]
    fn arbitrary_bytes_never_panic(raw in vec(any::<u8>(), 0..40), prefix in any::<bool>()) {
        let mut raw = raw;
        if prefix {
            raw.insert(0, b'/');
        }
        match (FilePath::from_bytes(&raw), std::str::from_utf8(&raw)) {
            (Ok(p), Ok(s)) => {
                prop_assert!(model_accepts(s));
                prop_assert_eq!(p.as_str(), s);
            }
            (Ok(p), Err(_)) => prop_assert!(false, "accepted non-UTF-8 as {p:?}"),
            (Err(e), Ok(s)) => {
                prop_assert!(!model_accepts(s));
                prop_assert_eq!(e.code, ErrorCode::BadPath);
            }
            (Err(e), Err(_)) => prop_assert_eq!(e.code, ErrorCode::BadPath),
        }
    }

    /// Paths order and compare as their strings do (directory listings rely on it).
    #[test]
    fn order_is_string_order(a in file_path(), b in file_path()) {
        prop_assert_eq!(a.cmp(&b), a.as_str().cmp(b.as_str()));
        prop_assert_eq!(a == b, a.as_str() == b.as_str());
    }
}
