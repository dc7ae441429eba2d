//! Property tests of the RESP decoder ([`Frame::decode`]): hostile bytes never panic and never
//! get past the limits, valid frames round-trip however the bytes are split.
//!
//! `cargo test` runs each property with proptest's default case count; `make fuzz` runs the
//! same properties with `PROPTEST_CASES` raised.

mod strategies;

use bytes::BytesMut;
use cleave_proto::frame::{Frame, FrameError, Limits};
use proptest::collection::vec;
use proptest::prelude::*;
use strategies::{cuts, frame, mutated_frame_bytes, resp_soup, tight_limits};

/// What one call of `decode` did to a buffer.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Need,
    Got(Frame, usize),
    Failed(FrameError),
}

fn step(input: &[u8], limits: &Limits) -> Step {
    let mut buf = BytesMut::from(input);
    match Frame::decode(&mut buf, limits) {
        Ok(None) => {
            assert_eq!(&buf[..], input, "Ok(None) must consume nothing");
            Step::Need
        }
        Ok(Some(f)) => {
            let used = input.len() - buf.len();
            assert_eq!(&buf[..], &input[used..], "decode consumed only a prefix");
            Step::Got(f, used)
        }
        Err(e) => Step::Failed(e),
    }
}

/// Decode as many frames as the buffer holds.
fn drain(buf: &mut BytesMut, limits: &Limits) -> Result<Vec<Frame>, FrameError> {
    let mut out = vec![];
    while let Some(f) = Frame::decode(buf, limits)? {
        out.push(f);
    }
    Ok(out)
}

/// A decoded frame never exceeds the limits it was decoded under.
fn assert_within(f: &Frame, limits: &Limits, depth: usize) {
    match f {
        Frame::Simple(s) | Frame::Error(s) => {
            assert!(s.len() <= limits.max_line, "line of {} bytes", s.len())
        }
        Frame::Bulk(b) => assert!(b.len() <= limits.max_bulk, "bulk of {} bytes", b.len()),
        Frame::Array(items) => {
            assert!(depth < limits.max_depth, "array at depth {depth}");
            assert!(items.len() <= limits.max_array, "{} items", items.len());
            for i in items {
                assert_within(i, limits, depth + 1);
            }
        }
        Frame::Map(pairs) => {
            assert!(depth < limits.max_depth, "map at depth {depth}");
            assert!(pairs.len() <= limits.max_array, "{} pairs", pairs.len());
            for (k, v) in pairs {
                assert_within(k, limits, depth + 1);
                assert_within(v, limits, depth + 1);
            }
        }
        Frame::Integer(_) | Frame::Null => {}
    }
}

/// What a frame becomes on the wire: the decoder tolerates a lone CR inside a line, the
/// encoder never sends one (CR and LF in simple strings and errors become spaces).
fn as_sent(f: &Frame) -> Frame {
    let clean = |s: &str| s.replace(['\r', '\n'], " ");
    match f {
        Frame::Simple(s) => Frame::Simple(clean(s)),
        Frame::Error(s) => Frame::Error(clean(s)),
        Frame::Array(items) => Frame::Array(items.iter().map(as_sent).collect()),
        Frame::Map(pairs) => Frame::Map(
            pairs
                .iter()
                .map(|(k, v)| (as_sent(k), as_sent(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The checks every input must pass, valid or not: no panic; the answer for every prefix is
/// consistent with the answer for the whole (a decoder sees a stream one read at a time, so a
/// prefix may only say "need more" or give the same answer); decoded frames respect the limits
/// and re-encode to something that decodes to the same frame.
fn check_any_input(input: &[u8], limits: &Limits) {
    let whole = step(input, limits);
    for cut in 0..input.len() {
        match step(&input[..cut], limits) {
            Step::Need => {}
            early => assert_eq!(
                early, whole,
                "prefix of {cut} bytes disagrees with the whole"
            ),
        }
    }
    if let Step::Got(f, used) = &whole {
        assert!(*used > 0);
        assert_within(f, limits, 0);
        let again = f.to_bytes();
        assert_eq!(step(&again, limits), Step::Got(as_sent(f), again.len()));
    }
    if let Some(need) = Frame::expected_len(input, limits) {
        assert!(
            need <= 1 + limits.max_line + 2 + limits.max_bulk + 2,
            "expected_len {need} beyond the bulk limit"
        );
    }
}

proptest! {
    /// Arbitrary bytes: no panic, prefixes agree with the whole, limits hold.
    #[test]
    fn arbitrary_bytes_never_panic(input in vec(any::<u8>(), 0..64)) {
        check_any_input(&input, &tight_limits());
        check_any_input(&input, &Limits::default());
    }

    /// RESP-shaped garbage (type bytes, CRLFs, lengths at and past the limits).
    #[test]
    fn resp_shaped_garbage_never_panics(input in resp_soup()) {
        check_any_input(&input, &tight_limits());
        check_any_input(&input, &Limits::default());
    }

    /// Valid encodings with a few bytes flipped, inserted, removed or cut off.
    #[test]
    fn mutated_frames_never_panic(input in mutated_frame_bytes(tight_limits())) {
        check_any_input(&input, &tight_limits());
        check_any_input(&input, &Limits::default());
    }

    /// Every frame within the limits survives encode → decode, with nothing left over.
    #[test]
    fn valid_frames_round_trip(f in frame(Limits::default())) {
        let bytes = f.to_bytes();
        prop_assert_eq!(step(&bytes, &Limits::default()), Step::Got(f.clone(), bytes.len()));
    }

    /// Any text in a simple string or error goes out as exactly one line.
    #[test]
    fn text_lines_never_break_the_stream(text in "\\PC{0,8}|[a\r\n]{0,8}", error in any::<bool>()) {
        let f = if error { Frame::Error(text) } else { Frame::Simple(text) };
        let bytes = f.to_bytes();
        prop_assert_eq!(step(&bytes, &Limits::default()), Step::Got(as_sent(&f), bytes.len()));
    }

    /// A pipeline of frames, delivered in chunks cut at arbitrary points (as TCP may), decodes
    /// to the same frames in order; a partial frame consumes nothing.
    #[test]
    fn pipelines_survive_arbitrary_splits(
        frames in vec(frame(tight_limits()), 1..6),
        raw_cuts in vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let limits = tight_limits();
        let mut wire = BytesMut::new();
        for f in &frames {
            f.encode(&mut wire);
        }
        let mut buf = BytesMut::new();
        let mut got = vec![];
        let mut from = 0;
        for end in cuts(wire.len(), &raw_cuts) {
            buf.extend_from_slice(&wire[from..end]);
            from = end;
            got.extend(drain(&mut buf, &limits).expect("valid input"));
        }
        prop_assert!(buf.is_empty(), "{} bytes left over", buf.len());
        prop_assert_eq!(got, frames);
    }

    /// The same, one byte at a time.
    #[test]
    fn pipelines_survive_byte_by_byte(frames in vec(frame(tight_limits()), 1..4)) {
        let limits = tight_limits();
        let mut wire = BytesMut::new();
        for f in &frames {
            f.encode(&mut wire);
        }
        let mut buf = BytesMut::new();
        let mut got = vec![];
        for b in wire.iter() {
            buf.extend_from_slice(&[*b]);
            got.extend(drain(&mut buf, &limits).expect("valid input"));
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, frames);
    }

    /// A frame that breaks one limit is refused with that limit's error as soon as the offending
    /// header is read, without waiting for (or reserving) the bytes it announces.
    #[test]
    fn over_limit_headers_are_refused_at_once(
        over in prop_oneof![Just(1usize), 1usize..4, 1usize..1_000_000],
        which in 0u8..3,
    ) {
        let limits = tight_limits();
        let (header, expected) = match which {
            0 => {
                let n = limits.max_bulk + over;
                (format!("${n}\r\n"), FrameError::BulkTooLarge(n, limits.max_bulk))
            }
            1 => {
                let n = limits.max_array + over;
                (format!("*{n}\r\n"), FrameError::ArrayTooLarge(n, limits.max_array))
            }
            _ => {
                let depth = limits.max_depth + 1 + over % 4;
                ("*1\r\n".repeat(depth), FrameError::TooDeep(limits.max_depth))
            }
        };
        prop_assert_eq!(step(header.as_bytes(), &limits), Step::Failed(expected));
        prop_assert_eq!(Frame::expected_len(header.as_bytes(), &limits), None);
    }

    /// A line that is still unterminated past `max_line` is refused, so a peer cannot make the
    /// reader buffer an endless line.
    #[test]
    fn endless_lines_are_refused(kind in prop::sample::select(vec![b'+', b'-', b':', b'$', b'*']),
                                 body in vec(any::<u8>().prop_filter("no LF", |b| *b != b'\n'), 14..40)) {
        let limits = tight_limits();
        let mut input = vec![kind];
        input.extend(&body);
        prop_assert!(body.len() > limits.max_line + 1);
        prop_assert_eq!(step(&input, &limits), Step::Failed(FrameError::LineTooLong(limits.max_line)));
    }
}
