//! A framed RESP connection over any async byte stream.
//!
//! Reads are buffered and decoded incrementally (pipelined requests come out one by one);
//! writes are buffered until [`Connection::flush`], so a server answering a pipeline of requests
//! sends all replies in one syscall. Large bulk payloads are written straight from their
//! `Bytes` without being copied into the write buffer.

use crate::frame::{Frame, FrameError, Limits, Protocol};
use bytes::{Buf, BytesMut};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Payloads at least this large are written directly instead of through the write buffer.
const DIRECT_WRITE_THRESHOLD: usize = 64 * 1024;
/// Initial read buffer; grows to fit the frame being read.
const READ_BUFFER: usize = 16 * 1024;

/// An error on a framed connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// Socket failure.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The peer sent bytes that are not valid RESP.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed mid-frame")]
    Truncated,
}

/// A RESP connection: read frames, write frames.
#[derive(Debug)]
pub struct Connection<S = TcpStream> {
    stream: S,
    read: BytesMut,
    write: BytesMut,
    limits: Limits,
    protocol: Protocol,
}

impl Connection<TcpStream> {
    /// Wrap a TCP stream (Nagle off: replies are batched by us, not the kernel).
    pub fn new(stream: TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
        Connection::with_stream(stream, Limits::default())
    }

    /// The peer's address, for logs.
    pub fn peer(&self) -> String {
        self.stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "?".into())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Wrap any stream with explicit decoding limits.
    pub fn with_stream(stream: S, limits: Limits) -> Self {
        Connection {
            stream,
            read: BytesMut::with_capacity(READ_BUFFER),
            write: BytesMut::with_capacity(READ_BUFFER),
            limits,
            protocol: Protocol::Resp2,
        }
    }

    /// Speak `protocol` from the next frame written on (a server switches after answering
    /// `HELLO 3`, or back after `HELLO 2` / `RESET`).
    pub fn set_protocol(&mut self, protocol: Protocol) {
        self.protocol = protocol;
    }

    /// The protocol frames are written in.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Change the decoding limits (e.g. a node raises `max_bulk` for replication batches).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Read the next frame; `Ok(None)` on a clean close between frames.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, ConnectionError> {
        loop {
            self.skip_empty_lines();
            // A lone CR may start an empty line: wait for the byte after it.
            let partial_line = self.read.as_ref() == b"\r";
            if !partial_line {
                if let Some(frame) = Frame::decode(&mut self.read, &self.limits)? {
                    return Ok(Some(frame));
                }
            }
            if let Some(need) = Frame::expected_len(&self.read, &self.limits) {
                self.read.reserve(need.saturating_sub(self.read.len()));
            } else if self.read.capacity() - self.read.len() < 4096 {
                self.read.reserve(READ_BUFFER);
            }
            if self.stream.read_buf(&mut self.read).await? == 0 {
                return if self.read.is_empty() {
                    Ok(None)
                } else {
                    Err(ConnectionError::Truncated)
                };
            }
        }
    }

    /// Drop empty lines (`\r\n` or `\n`) before the next frame. Redis ignores them between
    /// requests, and `redis-cli --pipe` relies on it: its closing `ECHO` starts with a CRLF.
    fn skip_empty_lines(&mut self) {
        loop {
            if self.read.starts_with(b"\r\n") {
                self.read.advance(2);
            } else if self.read.starts_with(b"\n") {
                self.read.advance(1);
            } else {
                return;
            }
        }
    }

    /// True when unread input is buffered (the client pipelined more requests), so a server can
    /// keep answering before it flushes its replies in one write.
    pub fn has_pending_input(&self) -> bool {
        !self.read.is_empty()
    }

    /// Queue a frame for sending. Large bulks are written through immediately.
    pub async fn write_frame(&mut self, frame: &Frame) -> io::Result<()> {
        match frame {
            Frame::Bulk(b) if b.len() >= DIRECT_WRITE_THRESHOLD => {
                self.write
                    .extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
                self.flush_buffer().await?;
                self.stream.write_all(b).await?;
                self.write.extend_from_slice(b"\r\n");
            }
            Frame::Array(items) if items.iter().any(is_large) => {
                self.write
                    .extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                for item in items {
                    Box::pin(self.write_frame(item)).await?;
                }
            }
            other => other.encode_as(&mut self.write, self.protocol),
        }
        if self.write.len() >= DIRECT_WRITE_THRESHOLD {
            self.flush_buffer().await?;
        }
        Ok(())
    }

    /// Send everything queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.flush_buffer().await?;
        self.stream.flush().await
    }

    async fn flush_buffer(&mut self) -> io::Result<()> {
        while self.write.has_remaining() {
            let n = self.stream.write(&self.write).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.write.advance(n);
        }
        Ok(())
    }

    /// Send bytes exactly as given, flushed: how tests and tools put malformed or hand-made
    /// input on the wire.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.flush_buffer().await?;
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Write one frame and flush it.
    pub async fn send(&mut self, frame: &Frame) -> io::Result<()> {
        self.write_frame(frame).await?;
        self.flush().await
    }

    /// Split into the underlying stream (used when handing a socket to a multiplexer).
    pub fn into_parts(self) -> (S, BytesMut) {
        (self.stream, self.read)
    }
}

fn is_large(f: &Frame) -> bool {
    matches!(f, Frame::Bulk(b) if b.len() >= DIRECT_WRITE_THRESHOLD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_cross_a_duplex_stream_including_large_bulks() {
        let (a, b) = tokio::io::duplex(1024);
        let mut left = Connection::with_stream(a, Limits::default());
        let mut right = Connection::with_stream(b, Limits::default());
        let big = Frame::command([b"PART".to_vec(), vec![9u8; 300_000]]);
        let sent = big.clone();
        let writer = tokio::spawn(async move {
            left.write_frame(&Frame::Integer(1)).await.unwrap();
            left.write_frame(&sent).await.unwrap();
            left.flush().await.unwrap();
        });
        assert_eq!(right.read_frame().await.unwrap(), Some(Frame::Integer(1)));
        assert_eq!(right.read_frame().await.unwrap(), Some(big));
        writer.await.unwrap();
        assert_eq!(right.read_frame().await.unwrap(), None);
    }

    #[tokio::test]
    async fn empty_lines_between_frames_are_skipped() {
        let (mut a, b) = tokio::io::duplex(64);
        let mut right = Connection::with_stream(b, Limits::default());
        a.write_all(b"\r\n\n:1\r\n\r").await.unwrap();
        assert_eq!(right.read_frame().await.unwrap(), Some(Frame::Integer(1)));
        a.write_all(b"\n:2\r\n").await.unwrap();
        assert_eq!(right.read_frame().await.unwrap(), Some(Frame::Integer(2)));
        a.write_all(b"\rX\r\n").await.unwrap();
        assert!(matches!(
            right.read_frame().await,
            Err(ConnectionError::Frame(FrameError::BadType(b'\r')))
        ));
    }

    #[tokio::test]
    async fn close_mid_frame_is_truncated() {
        let (mut a, b) = tokio::io::duplex(64);
        let mut right = Connection::with_stream(b, Limits::default());
        a.write_all(b"$10\r\nabc").await.unwrap();
        drop(a);
        assert!(matches!(
            right.read_frame().await,
            Err(ConnectionError::Truncated)
        ));
    }
}
