//! The decoder allocates in proportion to the bytes it was given, never to the lengths a peer
//! announces: a hostile `$67000000` or `*1000000` header costs nothing until the bytes arrive.
//!
//! A counting global allocator measures every [`Frame::decode`] call. This binary holds one
//! test only, so no other test thread allocates while a call is measured.

mod strategies;

use bytes::BytesMut;
use cleave_proto::frame::{Frame, Limits};
use proptest::collection::vec;
use proptest::prelude::*;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use strategies::{mutated_frame_bytes, resp_soup, tight_limits};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated by decoding `input` to the end (every frame, until "need more" or an error).
fn allocated_by_decode(input: &[u8], limits: &Limits) -> usize {
    let mut buf = BytesMut::from(input);
    let mut frames = Vec::with_capacity(64);
    let region = Region::new(GLOBAL);
    while let Ok(Some(f)) = Frame::decode(&mut buf, limits) {
        if frames.len() < 64 {
            frames.push(f);
        }
    }
    let stats = region.change();
    drop(frames);
    stats.bytes_allocated + stats.bytes_reallocated.max(0) as usize
}

/// A header announcing a huge bulk or array (within or past the limits), then a few bytes.
fn hostile_header() -> impl Strategy<Value = Vec<u8>> {
    let limits = Limits::default();
    (
        prop::sample::select(vec![b'$', b'*']),
        prop_oneof![
            Just(limits.max_bulk as u64),
            Just(limits.max_array as u64),
            1u64..=limits.max_bulk as u64 * 2,
            any::<u64>()
        ],
        vec(any::<u8>(), 0..32),
        any::<bool>(),
    )
        .prop_map(|(kind, n, tail, ints)| {
            let mut out = format!("{}{n}\r\n", kind as char).into_bytes();
            if ints {
                out.extend(b":1\r\n".repeat(tail.len()));
            } else {
                out.extend(tail);
            }
            out
        })
}

proptest! {
    #[test]
    fn decoding_allocates_in_proportion_to_input(
        input in prop_oneof![hostile_header(), resp_soup(), mutated_frame_bytes(tight_limits()), vec(any::<u8>(), 0..64)],
    ) {
        for limits in [Limits::default(), tight_limits()] {
            let used = allocated_by_decode(&input, &limits);
            let bound = 16 * input.len() + 1024;
            prop_assert!(
                used <= bound,
                "decoding {} bytes allocated {} bytes (bound {}): {:?}",
                input.len(), used, bound, String::from_utf8_lossy(&input)
            );
        }
    }
}
