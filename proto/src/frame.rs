//! RESP frames: the unit of everything Cleave sends over a socket.
//!
//! Cleave speaks RESP2 so that every Redis tool (`redis-cli`, `redis-benchmark`, client
//! libraries) can talk to a router or a node, and RESP3 to clients that ask for it with
//! `HELLO 3`: the only RESP3 shapes it sends are maps (`%`) and the null (`_`), which
//! [`Frame::encode_as`] flattens to an array and `$-1` for RESP2 peers. Decoding is incremental: [`Frame::decode`] looks
//! at a buffer that may hold a partial frame, several pipelined frames, or garbage, and answers
//! "not yet", "here is one frame", or an error — never a panic, and never an allocation larger
//! than the [`Limits`] allow, because a peer's length prefix is not trusted.

use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

/// Bounds applied while decoding, so a hostile or broken peer cannot make us allocate without
/// limit or recurse without end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string accepted, in bytes.
    pub max_bulk: usize,
    /// Largest number of elements in one array.
    pub max_array: usize,
    /// Deepest nesting of arrays.
    pub max_depth: usize,
    /// Longest simple-string / error / integer line.
    pub max_line: usize,
}

/// Default largest bulk: a 64 MiB part plus headroom. Bigger files travel in parts.
pub const DEFAULT_MAX_BULK: usize = 64 * 1024 * 1024 + 4096;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk: DEFAULT_MAX_BULK,
            max_array: 1 << 20,
            max_depth: 8,
            max_line: 64 * 1024,
        }
    }
}

/// One RESP value.
#[derive(Clone, PartialEq, Eq)]
pub enum Frame {
    /// `+text`
    Simple(String),
    /// `-CODE message`
    Error(String),
    /// `:123`
    Integer(i64),
    /// `$len\r\nbytes`
    Bulk(Bytes),
    /// `$-1` (or `*-1`)
    Null,
    /// `*n` followed by n frames
    Array(Vec<Frame>),
    /// RESP3 `%n` followed by n key/value pairs; a flat array of pairs in RESP2.
    Map(Vec<(Frame, Frame)>),
}

/// Which RESP version a peer speaks: it decides how maps and nulls are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2, the default of every connection.
    #[default]
    Resp2,
    /// RESP3, after the peer sent `HELLO 3`.
    Resp3,
}

/// Why a buffer could not be decoded. The connection that produced it should be answered with
/// an error and closed: after a framing error the byte stream has no trustworthy boundary.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// A type byte that Cleave does not decode (inline commands are not supported).
    #[error("unexpected byte {0:#04x}, expected one of + - : $ * % _")]
    BadType(u8),
    /// A length or integer that does not parse.
    #[error("invalid number")]
    BadNumber,
    /// A line without `\r\n`, or a bulk not followed by `\r\n`.
    #[error("missing CRLF")]
    BadTerminator,
    /// A bulk string larger than the limit.
    #[error("bulk of {0} bytes exceeds the limit of {1}")]
    BulkTooLarge(usize, usize),
    /// An array longer than the limit.
    #[error("array of {0} elements exceeds the limit of {1}")]
    ArrayTooLarge(usize, usize),
    /// Arrays nested too deep.
    #[error("nesting deeper than {0}")]
    TooDeep(usize),
    /// A line longer than the limit.
    #[error("line longer than {0} bytes")]
    LineTooLong(usize),
    /// A simple string or error that is not UTF-8.
    #[error("line is not UTF-8")]
    NotUtf8,
}

impl Frame {
    /// A bulk frame from anything byte-like.
    pub fn bulk(b: impl Into<Bytes>) -> Frame {
        Frame::Bulk(b.into())
    }

    /// An array of bulk strings, the shape of every command.
    pub fn command<I, B>(parts: I) -> Frame
    where
        I: IntoIterator<Item = B>,
        B: Into<Bytes>,
    {
        Frame::Array(parts.into_iter().map(|p| Frame::Bulk(p.into())).collect())
    }

    /// The `+OK` reply.
    pub fn ok() -> Frame {
        Frame::Simple("OK".into())
    }

    /// Try to decode one frame from the front of `buf`.
    ///
    /// Returns `Ok(None)` when more bytes are needed (nothing is consumed), `Ok(Some(frame))`
    /// after consuming exactly that frame's bytes, or an error for malformed input. Bulk
    /// payloads are split off the buffer without copying.
    pub fn decode(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Frame>, FrameError> {
        let len = match measure(buf, 0, limits, 0)? {
            Some(end) => end,
            None => return Ok(None),
        };
        let bytes = buf.split_to(len).freeze();
        let mut pos = 0;
        Ok(Some(build(&bytes, &mut pos)))
    }

    /// For a partial buffer that starts a bulk: how many bytes the whole frame will need, so the
    /// reader can reserve once instead of growing repeatedly. `None` if unknown.
    pub fn expected_len(buf: &[u8], limits: &Limits) -> Option<usize> {
        if buf.first() != Some(&b'$') {
            return None;
        }
        let (line, next) = read_line(buf, 1, limits.max_line).ok()??;
        let n: usize = parse_int(line).ok()?.try_into().ok()?;
        (n <= limits.max_bulk).then_some(next + n + 2)
    }

    /// Append the wire form of this frame to `out`: maps as RESP3 `%`, the null as `$-1`
    /// (which both versions read), so that every frame survives encode → decode.
    pub fn encode(&self, out: &mut BytesMut) {
        self.put(out, None);
    }

    /// Append the wire form of this frame for a peer speaking `proto`: RESP2 gets maps as flat
    /// arrays of pairs and `$-1` for null, RESP3 gets `%` maps and `_`.
    pub fn encode_as(&self, out: &mut BytesMut, proto: Protocol) {
        self.put(out, Some(proto));
    }

    fn put(&self, out: &mut BytesMut, proto: Option<Protocol>) {
        match self {
            Frame::Simple(s) => put_text_line(out, b'+', s),
            Frame::Error(s) => put_text_line(out, b'-', s),
            Frame::Integer(n) => put_line(out, b':', n.to_string().as_bytes()),
            Frame::Null if proto == Some(Protocol::Resp3) => out.put_slice(b"_\r\n"),
            Frame::Null => out.put_slice(b"$-1\r\n"),
            Frame::Bulk(b) => {
                put_line(out, b'$', b.len().to_string().as_bytes());
                out.put_slice(b);
                out.put_slice(b"\r\n");
            }
            Frame::Array(items) => {
                put_line(out, b'*', items.len().to_string().as_bytes());
                for item in items {
                    item.put(out, proto);
                }
            }
            Frame::Map(pairs) => {
                if proto == Some(Protocol::Resp2) {
                    put_line(out, b'*', (pairs.len() * 2).to_string().as_bytes());
                } else {
                    put_line(out, b'%', pairs.len().to_string().as_bytes());
                }
                for (k, v) in pairs {
                    k.put(out, proto);
                    v.put(out, proto);
                }
            }
        }
    }

    /// The encoded form as one buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }

    /// The upper-cased name of a request (its first element), for messages and dispatch.
    pub fn command_name(&self) -> Option<String> {
        match self {
            Frame::Array(items) => items
                .first()
                .and_then(Frame::as_bytes)
                .map(|b| String::from_utf8_lossy(b).to_ascii_uppercase()),
            _ => None,
        }
    }

    /// The bytes of a bulk or simple string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Frame::Bulk(b) => Some(b),
            Frame::Simple(s) => Some(s.as_bytes()),
            _ => None,
        }
    }
}

fn put_line(out: &mut BytesMut, kind: u8, body: &[u8]) {
    out.reserve(body.len() + 3);
    out.put_u8(kind);
    out.put_slice(body);
    out.put_slice(b"\r\n");
}

/// A simple string or error line. CR and LF cannot appear inside one (the peer would read the
/// rest as another reply and lose its place in the stream), so each becomes a space, as Redis
/// does: error messages quote client input.
fn put_text_line(out: &mut BytesMut, kind: u8, text: &str) {
    if !text.contains(['\r', '\n']) {
        return put_line(out, kind, text.as_bytes());
    }
    let clean: Vec<u8> = text
        .bytes()
        .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b })
        .collect();
    put_line(out, kind, &clean);
}

/// Find the end (exclusive offset) of the frame starting at `pos`, or `None` if incomplete.
fn measure(
    buf: &[u8],
    pos: usize,
    limits: &Limits,
    depth: usize,
) -> Result<Option<usize>, FrameError> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let Some((line, next)) = read_line(buf, pos + 1, limits.max_line)? else {
        return Ok(None);
    };
    match kind {
        b'+' | b'-' => {
            std::str::from_utf8(line).map_err(|_| FrameError::NotUtf8)?;
            Ok(Some(next))
        }
        b':' => parse_int(line).map(|_| Some(next)),
        b'$' => {
            let n = parse_int(line)?;
            if n == -1 {
                return Ok(Some(next));
            }
            let n = usize::try_from(n).map_err(|_| FrameError::BadNumber)?;
            if n > limits.max_bulk {
                return Err(FrameError::BulkTooLarge(n, limits.max_bulk));
            }
            let end = next + n + 2;
            if buf.len() < end {
                return Ok(None);
            }
            if &buf[next + n..end] != b"\r\n" {
                return Err(FrameError::BadTerminator);
            }
            Ok(Some(end))
        }
        b'_' if line.is_empty() => Ok(Some(next)),
        b'_' => Err(FrameError::BadNumber),
        b'*' | b'%' => {
            let n = parse_int(line)?;
            if n == -1 && kind == b'*' {
                return Ok(Some(next));
            }
            let n = usize::try_from(n).map_err(|_| FrameError::BadNumber)?;
            if n > limits.max_array {
                return Err(FrameError::ArrayTooLarge(n, limits.max_array));
            }
            if depth + 1 > limits.max_depth {
                return Err(FrameError::TooDeep(limits.max_depth));
            }
            // A map of n pairs holds 2n frames; n is bounded above, so this cannot overflow.
            let elements = if kind == b'%' { 2 * n } else { n };
            let mut at = next;
            for _ in 0..elements {
                match measure(buf, at, limits, depth + 1)? {
                    Some(end) => at = end,
                    None => return Ok(None),
                }
            }
            Ok(Some(at))
        }
        other => Err(FrameError::BadType(other)),
    }
}

/// Build a frame from bytes already validated by [`measure`].
fn build(bytes: &Bytes, pos: &mut usize) -> Frame {
    let kind = bytes[*pos];
    let start = *pos + 1;
    let crlf = start
        + bytes[start..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or(0);
    let line = &bytes[start..crlf];
    *pos = crlf + 2;
    let int = || parse_int(line).unwrap_or(0);
    match kind {
        b'+' => Frame::Simple(String::from_utf8_lossy(line).into_owned()),
        b'-' => Frame::Error(String::from_utf8_lossy(line).into_owned()),
        b':' => Frame::Integer(int()),
        b'$' if int() < 0 => Frame::Null,
        b'$' => {
            let n = int() as usize;
            let data = bytes.slice(*pos..*pos + n);
            *pos += n + 2;
            Frame::Bulk(data)
        }
        b'*' if int() < 0 => Frame::Null,
        b'_' => Frame::Null,
        b'%' => {
            let n = int() as usize;
            let mut pairs = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                let k = build(bytes, pos);
                let v = build(bytes, pos);
                pairs.push((k, v));
            }
            Frame::Map(pairs)
        }
        _ => {
            let n = int() as usize;
            let mut items = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                items.push(build(bytes, pos));
            }
            Frame::Array(items)
        }
    }
}

/// The line starting at `pos` (without CRLF) and the offset just past its CRLF.
fn read_line(buf: &[u8], pos: usize, max: usize) -> Result<Option<(&[u8], usize)>, FrameError> {
    let rest = buf.get(pos..).unwrap_or_default();
    let window = &rest[..rest.len().min(max + 2)];
    match window.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && window[i - 1] == b'\r' => Ok(Some((&rest[..i - 1], pos + i + 1))),
        Some(_) => Err(FrameError::BadTerminator),
        None if rest.len() > max + 1 => Err(FrameError::LineTooLong(max)),
        None => Ok(None),
    }
}

fn parse_int(line: &[u8]) -> Result<i64, FrameError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(FrameError::BadNumber)
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frame::Simple(s) => write!(f, "+{s}"),
            Frame::Error(s) => write!(f, "-{s}"),
            Frame::Integer(n) => write!(f, ":{n}"),
            Frame::Null => write!(f, "(nil)"),
            Frame::Bulk(b) if b.len() > 64 => write!(f, "${}<{} bytes>", b.len(), b.len()),
            Frame::Bulk(b) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Frame::Array(items) => f.debug_list().entries(items).finish(),
            Frame::Map(pairs) => f
                .debug_map()
                .entries(pairs.iter().map(|(k, v)| (k, v)))
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<Vec<Frame>, FrameError> {
        let mut buf = BytesMut::from(input);
        let mut out = vec![];
        while let Some(f) = Frame::decode(&mut buf, &Limits::default())? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn round_trips_every_kind() {
        let frame = Frame::Array(vec![
            Frame::Simple("OK".into()),
            Frame::Error("NOTFOUND no such file".into()),
            Frame::Integer(-42),
            Frame::bulk("bin\r\nary\0"),
            Frame::Null,
            Frame::Array(vec![]),
            Frame::Map(vec![(Frame::bulk("k"), Frame::Integer(1))]),
        ]);
        let bytes = frame.to_bytes();
        assert_eq!(decode_all(&bytes).unwrap(), vec![frame]);
    }

    #[test]
    fn maps_and_nulls_follow_the_peers_protocol() {
        let map = Frame::Map(vec![(Frame::bulk("size"), Frame::Integer(3))]);
        let reply = Frame::Array(vec![map, Frame::Null]);
        let mut two = BytesMut::new();
        reply.encode_as(&mut two, Protocol::Resp2);
        assert_eq!(&two[..], b"*2\r\n*2\r\n$4\r\nsize\r\n:3\r\n$-1\r\n");
        let mut three = BytesMut::new();
        reply.encode_as(&mut three, Protocol::Resp3);
        assert_eq!(&three[..], b"*2\r\n%1\r\n$4\r\nsize\r\n:3\r\n_\r\n");
        assert_eq!(decode_all(&three).unwrap(), vec![reply]);
        assert_eq!(decode_all(b"_x\r\n"), Err(FrameError::BadNumber));
        assert_eq!(decode_all(b"%-1\r\n"), Err(FrameError::BadNumber));
        assert!(matches!(
            decode_all(b"%99999999999\r\n"),
            Err(FrameError::ArrayTooLarge(..))
        ));
    }

    #[test]
    fn partial_input_waits_at_every_cut() {
        let bytes = Frame::command(["INSERT", "/a/b", "hello world"]).to_bytes();
        for cut in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..cut]);
            assert_eq!(
                Frame::decode(&mut buf, &Limits::default()),
                Ok(None),
                "cut at {cut}"
            );
            assert_eq!(buf.len(), cut, "nothing consumed");
        }
    }

    #[test]
    fn pipelined_frames_come_out_in_order() {
        let mut bytes = BytesMut::new();
        for i in 0..3 {
            Frame::Integer(i).encode(&mut bytes);
        }
        let frames = decode_all(&bytes).unwrap();
        assert_eq!(
            frames,
            vec![Frame::Integer(0), Frame::Integer(1), Frame::Integer(2)]
        );
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        assert_eq!(decode_all(b"GET foo\r\n"), Err(FrameError::BadType(b'G')));
        assert_eq!(decode_all(b"$abc\r\n"), Err(FrameError::BadNumber));
        assert_eq!(decode_all(b"$-5\r\n"), Err(FrameError::BadNumber));
        assert_eq!(decode_all(b"$3\r\nabcXY"), Err(FrameError::BadTerminator));
        assert_eq!(decode_all(b":12\n"), Err(FrameError::BadTerminator));
        assert_eq!(decode_all(b"+\xff\xfe\r\n"), Err(FrameError::NotUtf8));
    }

    #[test]
    fn hostile_lengths_are_refused_before_allocating() {
        let limits = Limits::default();
        let huge = format!("${}\r\n", u64::MAX / 2);
        assert!(matches!(
            decode_all(huge.as_bytes()),
            Err(FrameError::BulkTooLarge(..))
        ));
        assert!(matches!(
            decode_all(b"*99999999999\r\n"),
            Err(FrameError::ArrayTooLarge(..))
        ));
        let deep = "*1\r\n".repeat(limits.max_depth + 1);
        assert!(matches!(
            decode_all(deep.as_bytes()),
            Err(FrameError::TooDeep(_))
        ));
        let long = vec![b'+'; limits.max_line + 10];
        assert!(matches!(decode_all(&long), Err(FrameError::LineTooLong(_))));
    }

    #[test]
    fn line_breaks_in_text_lines_cannot_inject_replies() {
        let reply = Frame::Error("ERR unknown command 'X\r\n:1'\n".into());
        assert_eq!(
            decode_all(&reply.to_bytes()).unwrap(),
            vec![Frame::Error("ERR unknown command 'X  :1' ".into())]
        );
        let simple = Frame::Simple("a\rb".into());
        assert_eq!(
            decode_all(&simple.to_bytes()).unwrap(),
            vec![Frame::Simple("a b".into())]
        );
    }

    #[test]
    fn expected_len_reports_bulk_size() {
        let bytes = Frame::bulk(vec![7u8; 1000]).to_bytes();
        assert_eq!(
            Frame::expected_len(&bytes[..10], &Limits::default()),
            Some(bytes.len())
        );
    }
}
