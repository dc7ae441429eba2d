//! The routing hash: which cluster owns a root directory.
//!
//! `hash(root)` is the upper 32 bits of xxh3-64 (seed 0) of the root's UTF-8 bytes. Every
//! component (router, node range checks, operator, CLI) must agree on it bit for bit, so it
//! lives here and nowhere else.

use xxhash_rust::xxh3::xxh3_64;

/// The hash key of a root directory.
pub fn hash_root(root: &str) -> u32 {
    (xxh3_64(root.as_bytes()) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers computed outside this crate, with the reference xxHash library (through
    /// python-xxhash: `xxhash.xxh3_64_intdigest(root.encode()) >> 32`), so a change of
    /// algorithm, seed, half or byte encoding cannot go unseen.
    #[test]
    fn is_the_upper_half_of_xxh3() {
        assert_eq!(hash_root(""), (0x2d06800538d394c2_u64 >> 32) as u32);
        for (root, expected) in [
            ("", 0x2d06_8005),
            ("a", 0xe6c6_32b6),
            ("r0", 0xd44f_4342),
            ("photos", 0x032d_5b6a),
            ("videos", 0x6556_d9c9),
            ("ünï", 0x5b3c_5b63),
        ] {
            assert_eq!(hash_root(root), expected, "hash of {root:?}");
        }
    }

    #[test]
    fn spreads_roots_over_both_halves() {
        let upper = (0..1000)
            .filter(|i| hash_root(&format!("r{i}")) > u32::MAX / 2)
            .count();
        assert!(
            (400..600).contains(&upper),
            "{upper} of 1000 in the upper half"
        );
    }
}
