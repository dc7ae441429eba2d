//! Property tests of the command parser ([`Command::from_frame`]): every command round-trips
//! through its wire form; hostile requests get an error reply, never a panic.

mod strategies;

use bytes::{Bytes, BytesMut};
use cleave_proto::frame::Limits;
use cleave_proto::{Command, ErrorCode, Frame};
use proptest::collection::vec;
use proptest::prelude::*;
use strategies::{command, frame, hostile_arg, variant_name};

/// A reply to a bad request must be something a client can act on: a known code with a
/// message, sent as exactly one error frame (client input quoted in the message must not break
/// the line), read back with the same code.
fn assert_good_error(e: &cleave_proto::Reply) {
    assert!(ErrorCode::ALL.contains(&e.code));
    assert!(!e.message.is_empty(), "an error without a message");
    let mut wire = BytesMut::from(&e.to_frame().to_bytes()[..]);
    let frame = Frame::decode(&mut wire, &Limits::default());
    assert!(
        wire.is_empty(),
        "{e:?} leaves {wire:?} after its error line"
    );
    let Ok(Some(Frame::Error(line))) = frame else {
        panic!("{e:?} is sent as {frame:?}")
    };
    assert_eq!(cleave_proto::Reply::parse(&line).code, e.code, "{line:?}");
}

proptest! {
    /// Every command built by the strategy survives to_frame → bytes → decode → from_frame.
    #[test]
    fn every_command_round_trips(cmd in command()) {
        let frame = cmd.to_frame();
        let Frame::Array(items) = &frame else { panic!("{cmd:?} encodes as {frame:?}") };
        prop_assert_eq!(
            items[0].as_bytes().map(|b| String::from_utf8_lossy(b).into_owned()),
            Some(variant_name(&cmd).to_string())
        );
        let mut wire = BytesMut::new();
        frame.encode(&mut wire);
        let decoded = Frame::decode(&mut wire, &Limits::default()).unwrap().unwrap();
        prop_assert!(wire.is_empty());
        prop_assert_eq!(Command::from_frame(decoded), Ok(cmd.clone()));
        // The path a router hashes is the one the command carries (after `REQ session seq
        // NAME` for a tagged write).
        if let Some(p) = cmd.path() {
            let at = if matches!(cmd, Command::Req { .. }) { 4 } else { 1 };
            prop_assert_eq!(items[at].as_bytes(), Some(p.as_str().as_bytes()));
        }
    }

    /// Arrays of words the parser knows, in any order: an error reply or a command that
    /// re-encodes to an equivalent request. Never a panic.
    #[test]
    fn hostile_requests_never_panic(args in vec(hostile_arg(), 0..7)) {
        let frame = Frame::command(args);
        match Command::from_frame(frame) {
            Ok(cmd) => prop_assert_eq!(Command::from_frame(cmd.to_frame()), Ok(cmd)),
            Err(e) => assert_good_error(&e),
        }
    }

    /// A known command name followed by hostile arguments (the path most requests take).
    #[test]
    fn known_commands_with_hostile_arguments(
        name in prop::sample::select(cleave_proto::command::KNOWN.to_vec()),
        args in vec(hostile_arg(), 0..6),
    ) {
        let frame = Frame::command(std::iter::once(Bytes::from(name)).chain(args));
        match Command::from_frame(frame) {
            Ok(cmd) => {
                prop_assert_eq!(variant_name(&cmd), name, "the name picks the variant");
                prop_assert_eq!(Command::from_frame(cmd.to_frame()), Ok(cmd));
            }
            Err(e) => assert_good_error(&e),
        }
    }

    /// Any frame at all (nested arrays, integers, nulls, errors) as a request: never a panic.
    #[test]
    fn arbitrary_frames_never_panic(f in frame(Limits::default())) {
        match Command::from_frame(f) {
            Ok(cmd) => prop_assert_eq!(Command::from_frame(cmd.to_frame()), Ok(cmd)),
            Err(e) => assert_good_error(&e),
        }
    }

    /// A valid command with one argument replaced by a non-string frame, or with an extra
    /// argument appended, or with its last argument dropped: never a panic.
    #[test]
    fn damaged_commands_never_panic(
        cmd in command(),
        edit in 0u8..3,
        at in any::<prop::sample::Index>(),
        filler in frame(Limits::default()),
    ) {
        let Frame::Array(mut items) = cmd.to_frame() else { unreachable!() };
        let i = at.index(items.len());
        match edit {
            0 => items[i] = filler,
            1 => items.push(filler),
            _ => {
                items.pop();
            }
        }
        match Command::from_frame(Frame::Array(items)) {
            Ok(c) => prop_assert_eq!(Command::from_frame(c.to_frame()), Ok(c)),
            Err(e) => assert_good_error(&e),
        }
    }
}
