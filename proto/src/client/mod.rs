//! Async clients: [`Client`] (one connection, typed methods, used by the CLI, tests and the
//! operator) and [`MuxClient`] (one connection shared by many tasks with pipelining, used by the
//! router to forward requests), and [`MultiClient`] (a [`Client`] over several router addresses
//! that moves on when one fails, used by the CLI).

pub mod multi;
mod mux;

pub use multi::MultiClient;
pub use mux::MuxClient;

use crate::command::{Abort, Command, Commit, List, Part, Put, Read, Stat};
use crate::connection::Connection;
use crate::error::{Error, Reply, Result};
use crate::frame::Frame;
use crate::path::FilePath;
use crate::range::RangeTable;
use crate::status::NodeStatus;
use bytes::Bytes;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long [`Client::connect`] waits for the TCP handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Open a TCP connection within [`CONNECT_TIMEOUT`], naming the address in errors.
pub(crate) async fn connect_tcp(addr: &str) -> Result<TcpStream> {
    let connecting = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await;
    let stream = connecting
        .map_err(|_| Error::Connect {
            addr: addr.into(),
            source: std::io::ErrorKind::TimedOut.into(),
        })?
        .map_err(|source| Error::Connect {
            addr: addr.into(),
            source,
        })?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// The answer to `SELECT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selected {
    /// A file's contents.
    File(Bytes),
    /// A directory's entries (sub-directories end in `/`).
    Dir(Vec<String>),
}

/// A client on one connection. Requests are sent one at a time.
///
/// By default a request waits for its reply as long as it takes (the CLI streams gigabytes);
/// [`Client::with_timeout`] bounds each request, which every test should do so that a hung
/// server fails the test instead of hanging it.
#[derive(Debug)]
pub struct Client {
    conn: Connection,
    addr: String,
    timeout: Option<Duration>,
    /// Set when a request timed out: its reply may still arrive and would be taken for the
    /// next one's, so the connection is not used again.
    broken: bool,
}

/// Turn an error frame into an `Err`.
pub fn check(frame: Frame) -> Result<Frame> {
    match frame {
        Frame::Error(line) => Err(Error::Reply(Reply::parse(&line))),
        other => Ok(other),
    }
}

fn int(frame: Frame) -> Result<u64> {
    match frame {
        Frame::Integer(n) if n >= 0 => Ok(n as u64),
        other => Err(Error::Unexpected(format!("{other:?}"))),
    }
}

fn strings(frame: Frame) -> Result<Vec<String>> {
    match frame {
        Frame::Array(items) => items
            .into_iter()
            .map(|f| match f.as_bytes() {
                Some(b) => Ok(String::from_utf8_lossy(b).into_owned()),
                None => Err(Error::Unexpected(format!("{f:?}"))),
            })
            .collect(),
        other => Err(Error::Unexpected(format!("{other:?}"))),
    }
}

fn text(frame: Frame) -> Result<Bytes> {
    match frame {
        Frame::Bulk(b) => Ok(b),
        other => Err(Error::Unexpected(format!("{other:?}"))),
    }
}

fn path(p: &str) -> Result<FilePath> {
    FilePath::parse(p).map_err(Error::Reply)
}

/// The file commands, shared by [`Client`] and [`MultiClient`]: each builds its [`Command`]
/// and sends it with the type's own `call`, so the two clients cannot drift apart.
macro_rules! file_commands {
    ($client:ty) => {
        impl $client {
            /// `INSERT`: create or replace; returns the seq.
            pub async fn insert(&mut self, p: &str, data: impl Into<Bytes>) -> Result<u64> {
                let put = Put {
                    path: path(p)?,
                    data: data.into(),
                    content_type: None,
                    must_exist: false,
                };
                int(self.call(&Command::Put(put)).await?)
            }

            /// `UPDATE`: replace an existing file; returns the seq.
            pub async fn update(&mut self, p: &str, data: impl Into<Bytes>) -> Result<u64> {
                let put = Put {
                    path: path(p)?,
                    data: data.into(),
                    content_type: None,
                    must_exist: true,
                };
                int(self.call(&Command::Put(put)).await?)
            }

            /// `INSERT` with a content type.
            pub async fn insert_typed(
                &mut self,
                p: &str,
                data: Bytes,
                content_type: Option<String>,
            ) -> Result<u64> {
                let put = Put {
                    path: path(p)?,
                    data,
                    content_type,
                    must_exist: false,
                };
                int(self.call(&Command::Put(put)).await?)
            }

            /// `DELETE`; returns the seq.
            pub async fn delete(&mut self, p: &str) -> Result<u64> {
                int(self.call(&Command::Delete(path(p)?)).await?)
            }

            /// `SELECT`: a file's bytes or a directory's entries.
            pub async fn select(&mut self, p: &str) -> Result<Selected> {
                match self.call(&Command::Select(path(p)?)).await? {
                    Frame::Bulk(b) => Ok(Selected::File(b)),
                    arr @ Frame::Array(_) => Ok(Selected::Dir(strings(arr)?)),
                    other => Err(Error::Unexpected(format!("{other:?}"))),
                }
            }

            /// `LIST`: one page of a directory.
            pub async fn list(
                &mut self,
                p: &str,
                after: Option<&str>,
                limit: u32,
            ) -> Result<Vec<String>> {
                let list = List {
                    path: path(p)?,
                    after: after.map(str::to_owned),
                    limit,
                };
                strings(self.call(&Command::List(list)).await?)
            }

            /// `STAT`.
            pub async fn stat(&mut self, p: &str) -> Result<Stat> {
                let frame = self.call(&Command::Stat(path(p)?)).await?;
                Stat::from_frame(&frame).ok_or_else(|| Error::Unexpected(format!("{frame:?}")))
            }

            /// `READ`: a byte range of a file.
            pub async fn read(
                &mut self,
                p: &str,
                offset: u64,
                length: u64,
                version: Option<u64>,
            ) -> Result<Bytes> {
                let read = Read {
                    path: path(p)?,
                    offset,
                    length,
                    version,
                };
                text(self.call(&Command::Read(read)).await?)
            }

            /// `PART`: stage one part of an upload.
            pub async fn part(
                &mut self,
                p: &str,
                upload: &str,
                index: u32,
                data: Bytes,
            ) -> Result<u64> {
                let part = Part {
                    path: path(p)?,
                    upload: upload.into(),
                    index,
                    data,
                };
                int(self.call(&Command::Part(part)).await?)
            }

            /// `COMMIT`: publish an upload's parts as the file.
            pub async fn commit(
                &mut self,
                p: &str,
                upload: &str,
                parts: u32,
                content_type: Option<String>,
            ) -> Result<u64> {
                let commit = Commit {
                    path: path(p)?,
                    upload: upload.into(),
                    parts,
                    content_type,
                };
                int(self.call(&Command::Commit(commit)).await?)
            }

            /// `ABORT`: drop an upload's parts.
            pub async fn abort(&mut self, p: &str, upload: &str) -> Result<u64> {
                int(self
                    .call(&Command::Abort(Abort {
                        path: path(p)?,
                        upload: upload.into(),
                    }))
                    .await?)
            }

            /// `PING`.
            pub async fn ping(&mut self) -> Result<()> {
                self.call(&Command::Ping(None)).await.map(drop)
            }
        }
    };
}

file_commands!(Client);
file_commands!(MultiClient);

impl Client {
    /// Connect to a router or node; when this process holds the admin credential
    /// ([`crate::auth::use_credential`]), present it first.
    pub async fn connect(addr: &str) -> Result<Client> {
        let stream = connect_tcp(addr).await?;
        let mut client = Client {
            conn: Connection::new(stream),
            addr: addr.to_string(),
            timeout: None,
            broken: false,
        };
        if let Some(secret) = crate::auth::credential() {
            let authenticating = client.authenticate(&secret);
            match tokio::time::timeout(CONNECT_TIMEOUT, authenticating).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(Error::Connect {
                        addr: addr.into(),
                        source: std::io::ErrorKind::TimedOut.into(),
                    })
                }
            }
        }
        Ok(client)
    }

    /// `AUTH admin <secret>`. A server configured without a secret needs none: its refusal
    /// to check one is not an error.
    pub async fn authenticate(&mut self, secret: &crate::auth::Secret) -> Result<()> {
        let cmd = Command::Auth {
            user: Some(crate::auth::ADMIN_USER.into()),
            password: Bytes::copy_from_slice(secret.expose().as_bytes()),
        };
        match self.raw(&cmd.to_frame()).await? {
            Frame::Error(e) if e.contains("without any password configured") => Ok(()),
            other => check(other).map(|_| ()),
        }
    }

    /// Bound every request (sending it and reading its reply) by `timeout`; a request that
    /// takes longer fails with [`Error::Timeout`] and the connection is not used again.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = Some(timeout);
        self
    }

    /// Connect, with every request bounded by `timeout` (see [`Client::with_timeout`]).
    pub async fn connect_timeout(addr: &str, timeout: Duration) -> Result<Client> {
        Ok(Client::connect(addr).await?.with_timeout(timeout))
    }

    /// The per-request timeout, if any.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The address this client is connected to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Send one frame and return the reply frame as is (errors included).
    pub async fn raw(&mut self, frame: &Frame) -> Result<Frame> {
        if self.broken {
            return Err(Error::Closed);
        }
        let Some(limit) = self.timeout else {
            return self.exchange(frame).await;
        };
        match tokio::time::timeout(limit, self.exchange(frame)).await {
            Ok(reply) => reply,
            Err(_) => {
                self.broken = true;
                tracing::warn!(addr = %self.addr, ?limit, "request timed out");
                Err(Error::Timeout)
            }
        }
    }

    async fn exchange(&mut self, frame: &Frame) -> Result<Frame> {
        self.conn.send(frame).await?;
        self.conn.read_frame().await?.ok_or(Error::Closed)
    }

    /// Send a command; an error reply becomes `Err`.
    pub async fn call(&mut self, cmd: &Command) -> Result<Frame> {
        check(self.raw(&cmd.to_frame()).await?)
    }

    /// `NODE.STATUS` of a node.
    pub async fn node_status(&mut self) -> Result<NodeStatus> {
        let json = text(self.call(&Command::NodeStatus).await?)?;
        serde_json::from_slice(&json).map_err(|e| Error::Unexpected(e.to_string()))
    }

    /// `NODE.FREEZE epoch ms`: stop the leader applying writes; returns its final applied seq.
    pub async fn freeze(&mut self, epoch: u64, ms: u64) -> Result<u64> {
        int(self.call(&Command::NodeFreeze { epoch, ms }).await?)
    }

    /// `NODE.OWN table-epoch ranges`: the seq of the entry from which the cluster owns exactly
    /// `own.ranges`.
    pub async fn own(&mut self, own: &crate::owned::Ownership) -> Result<u64> {
        int(self.call(&Command::NodeOwn(own.clone())).await?)
    }

    /// `NODE.LEAD epoch`.
    pub async fn lead(&mut self, epoch: u64) -> Result<()> {
        self.call(&Command::NodeLead { epoch }).await.map(drop)
    }

    /// `NODE.FOLLOW epoch leader`.
    pub async fn follow(&mut self, epoch: u64, leader: &str) -> Result<()> {
        self.call(&Command::NodeFollow {
            epoch,
            leader: leader.into(),
            learner: false,
            spans: Vec::new(),
        })
        .await
        .map(drop)
    }

    /// `NODE.FOLLOW epoch leader LEARNER [spans]`: copy `leader`'s data and log without
    /// counting towards its quorum; with `spans`, the snapshot copies only the data keys of
    /// those hashes (the range a split moves).
    pub async fn learn(&mut self, epoch: u64, leader: &str, spans: &[(u32, u32)]) -> Result<()> {
        self.call(&Command::NodeFollow {
            epoch,
            leader: leader.into(),
            learner: true,
            spans: spans.to_vec(),
        })
        .await
        .map(drop)
    }

    /// `TABLE.GET` of a router.
    pub async fn table(&mut self) -> Result<RangeTable> {
        let json = text(self.call(&Command::TableGet).await?)?;
        serde_json::from_slice(&json).map_err(|e| Error::Unexpected(e.to_string()))
    }

    /// `TABLE.PUSH` to a router.
    pub async fn push_table(&mut self, table: &RangeTable) -> Result<()> {
        let json = serde_json::to_vec(table).map_err(|e| Error::Unexpected(e.to_string()))?;
        self.call(&Command::TablePush(json.into())).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that accepts and reads but never answers: a request with a timeout fails in
    /// time, and the connection is not reused (a late reply would answer the wrong request).
    #[tokio::test]
    async fn a_silent_server_times_out_instead_of_hanging() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let mut conn = Connection::new(socket);
            while let Ok(Some(_)) = conn.read_frame().await {}
        });
        let mut c = Client::connect_timeout(&addr, Duration::from_millis(200))
            .await
            .unwrap();
        assert_eq!(c.timeout(), Some(Duration::from_millis(200)));
        let start = std::time::Instant::now();
        let err = c.ping().await.unwrap_err();
        assert!(matches!(err, Error::Timeout), "{err}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert!(matches!(c.ping().await.unwrap_err(), Error::Closed));
        server.abort();
    }
}
