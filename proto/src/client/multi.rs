//! [`MultiClient`]: a [`Client`] over a list of router addresses that moves on to the next
//! address when one fails.
//!
//! Routers are identical replicas, so any of them serves any request. The client uses one
//! connection at a time; when connecting fails (refused, unreachable, timed out) or the
//! connection breaks during a request (reset, closed, timed out), it drops that connection,
//! connects to the next address and sends the same request again, each address at most once
//! per request. Error replies (`-NOTFOUND`, `-TRYAGAIN`, ...) are answers, returned as they are:
//! the router already retried what it could.
//!
//! **Writes sent again.** A request whose connection broke may have been applied before the
//! break. The next router opens a new session for it, so the write can apply a second time;
//! the same `INSERT`, `PART` or `ABORT` applied twice leaves the same state, while a second
//! `DELETE` answers `-NOTFOUND` and a second `COMMIT` answers `-EXISTS ... already committed`.
//! [`MultiClient::resent`] tells the caller that the last request was sent again after such a
//! break, so it can read those two answers as "done" (the CLI does).

use super::Client;
use crate::command::Command;
use crate::error::{Error, Result};
use crate::frame::Frame;
use std::fmt;
use std::time::Duration;

/// Why an address list was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrError(pub String);

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AddrError {}

/// Check one `host:port` address (`[v6]:port` for IPv6 literals).
pub fn parse_addr(raw: &str) -> std::result::Result<String, AddrError> {
    let a = raw.trim();
    let bad = |why: &str| AddrError(format!("bad router address {raw:?}: {why}"));
    if a.is_empty() {
        return Err(AddrError(
            "empty router address (expected host:port)".into(),
        ));
    }
    let (host, port) = a
        .rsplit_once(':')
        .ok_or_else(|| bad("expected host:port"))?;
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if host.contains(char::is_whitespace) || host.contains('/') {
        return Err(bad("bad host"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(bad("an IPv6 address goes in brackets, e.g. [::1]:7000"));
    }
    match port.parse::<u16>() {
        Ok(0) => Err(bad("port 0")),
        Ok(_) => Ok(a.to_string()),
        Err(_) => Err(bad("the port is not a number from 1 to 65535")),
    }
}

/// Parse a comma-separated list of router addresses (`A` or `A,B,...`): every element a
/// `host:port`, none empty, at least one.
pub fn parse_addrs(list: &str) -> std::result::Result<Vec<String>, AddrError> {
    if list.trim().is_empty() {
        return Err(AddrError(
            "no router address given (expected host:port[,host:port...])".into(),
        ));
    }
    list.split(',').map(parse_addr).collect()
}

/// Whether `e` is a failure of the connection (the router may be gone), as opposed to an
/// answer.
pub fn is_transport(e: &Error) -> bool {
    matches!(
        e,
        Error::Connect { .. } | Error::Connection(_) | Error::Closed | Error::Timeout
    )
}

/// A client over several router addresses. See the [module docs](self).
#[derive(Debug)]
pub struct MultiClient {
    addrs: Vec<String>,
    current: usize,
    client: Option<Client>,
    timeout: Option<Duration>,
    resent: bool,
}

impl MultiClient {
    /// A client that connects lazily, on the first request.
    ///
    /// # Panics
    /// When `addrs` is empty (use [`parse_addrs`] for user input).
    pub fn new(addrs: Vec<String>) -> MultiClient {
        assert!(!addrs.is_empty(), "MultiClient needs at least one address");
        MultiClient {
            addrs,
            current: 0,
            client: None,
            timeout: None,
            resent: false,
        }
    }

    /// Connect to the first address that answers, in order. Fails with the last address's
    /// error when none does.
    pub async fn connect(addrs: Vec<String>) -> Result<MultiClient> {
        let mut c = MultiClient::new(addrs);
        c.ensure().await?;
        Ok(c)
    }

    /// Bound every request (and every connection it opens) by `timeout`; a request that takes
    /// longer counts as a broken connection and moves on.
    pub fn with_timeout(mut self, timeout: Duration) -> MultiClient {
        self.timeout = Some(timeout);
        if let Some(c) = self.client.take() {
            self.client = Some(c.with_timeout(timeout));
        }
        self
    }

    /// Start at the address at `index` (modulo the list's length): spreads clients over routers.
    pub fn starting_at(mut self, index: usize) -> MultiClient {
        let i = index % self.addrs.len();
        if i != self.current {
            self.current = i;
            self.client = None;
        }
        self
    }

    /// Every address, in order.
    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// The address in use (or tried next).
    pub fn addr(&self) -> &str {
        &self.addrs[self.current]
    }

    /// Whether the last request was sent again, to another address, after its connection
    /// broke while it was in flight (it may have been applied twice; see the module docs).
    pub fn resent(&self) -> bool {
        self.resent
    }

    /// Connect to the current address, else to each next one in turn (each at most once).
    async fn ensure(&mut self) -> Result<&mut Client> {
        if self.client.is_none() {
            let mut last = None;
            for i in 0..self.addrs.len() {
                if i > 0 {
                    self.current = (self.current + 1) % self.addrs.len();
                }
                match self.open(self.current).await {
                    Ok(c) => {
                        self.client = Some(c);
                        last = None;
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(addr = %self.addrs[self.current], "cannot connect: {e}");
                        last = Some(e);
                    }
                }
            }
            if let Some(e) = last {
                return Err(e);
            }
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    async fn open(&self, i: usize) -> Result<Client> {
        let addr = &self.addrs[i];
        let connecting = Client::connect(addr);
        let client = match self.timeout {
            None => connecting.await?,
            Some(t) => {
                tokio::time::timeout(t, connecting)
                    .await
                    .map_err(|_| Error::Connect {
                        addr: addr.clone(),
                        source: std::io::ErrorKind::TimedOut.into(),
                    })??
            }
        };
        Ok(match self.timeout {
            Some(t) => client.with_timeout(t),
            None => client,
        })
    }

    /// Send one frame and return the reply frame as is (errors included), moving on to the
    /// next address when the connection fails; each address is tried at most once.
    pub async fn raw(&mut self, frame: &Frame) -> Result<Frame> {
        self.resent = false;
        let mut in_flight_broke = false;
        let mut last = None;
        for attempt in 0..self.addrs.len() {
            if attempt > 0 {
                self.current = (self.current + 1) % self.addrs.len();
                self.client = None;
            }
            let client = match self.open_or_reuse().await {
                Ok(c) => c,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            match client.raw(frame).await {
                Err(e) if is_transport(&e) => {
                    tracing::debug!(addr = %self.addrs[self.current], "request failed, moving on: {e}");
                    self.client = None;
                    in_flight_broke = true;
                    last = Some(e);
                }
                reply => {
                    self.resent = in_flight_broke && attempt > 0;
                    return reply;
                }
            }
        }
        Err(last.unwrap_or(Error::Closed))
    }

    async fn open_or_reuse(&mut self) -> Result<&mut Client> {
        if self.client.is_none() {
            self.client = Some(self.open(self.current).await?);
        }
        Ok(self.client.as_mut().expect("set above"))
    }

    /// Send a command; an error reply becomes `Err`.
    pub async fn call(&mut self, cmd: &Command) -> Result<Frame> {
        super::check(self.raw(&cmd.to_frame()).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::Connection;
    use tokio::net::TcpListener;

    #[test]
    fn address_lists_parse() {
        assert_eq!(parse_addrs("127.0.0.1:7000").unwrap(), ["127.0.0.1:7000"]);
        assert_eq!(
            parse_addrs("a:1, b.example:2,[::1]:3").unwrap(),
            ["a:1", "b.example:2", "[::1]:3"]
        );
        for (bad, why) in [
            ("", "no router address"),
            ("  ", "no router address"),
            ("a:1,", "empty router address"),
            (",a:1", "empty router address"),
            ("a:1,,b:2", "empty router address"),
            ("a", "expected host:port"),
            (":7000", "no host"),
            ("a:", "not a number"),
            ("a:x", "not a number"),
            ("a:70000", "not a number"),
            ("a:0", "port 0"),
            ("::1:7000", "brackets"),
            ("a b:1", "bad host"),
        ] {
            let e = parse_addrs(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    /// An address where nothing listens: its port stays bound (never listened on, so a
    /// connection is refused) while the returned socket lives, so no parallel test takes it.
    fn dead_addr() -> (String, tokio::net::TcpSocket) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        (socket.local_addr().unwrap().to_string(), socket)
    }

    /// Accepts connections, reads one frame on each, then closes without answering.
    async fn breaking_server() -> (String, tokio::task::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let mut conn = Connection::new(s);
                let _ = conn.read_frame().await;
            }
        });
        (addr, task)
    }

    /// Answers every frame with `+PONG` (pings) or an integer 7 (anything else); counts frames.
    async fn good_server() -> (
        String,
        std::sync::Arc<std::sync::atomic::AtomicUsize>,
        tokio::task::JoinHandle<()>,
    ) {
        use std::sync::atomic::Ordering;
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    let mut conn = Connection::new(s);
                    while let Ok(Some(f)) = conn.read_frame().await {
                        count.fetch_add(1, Ordering::SeqCst);
                        let ping = Command::Ping(None).to_frame();
                        let reply = if f == ping {
                            Frame::Simple("PONG".into())
                        } else {
                            Frame::Integer(7)
                        };
                        if conn.send(&reply).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (addr, seen, task)
    }

    #[tokio::test]
    async fn connect_takes_the_first_address_that_answers() {
        let (dead, _held) = dead_addr();
        let (good, _, task) = good_server().await;
        let c = MultiClient::connect(vec![dead.clone(), good.clone()])
            .await
            .unwrap();
        assert_eq!(c.addr(), good);
        let err = MultiClient::connect(vec![dead.clone()]).await.unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{err}");
        task.abort();
    }

    #[tokio::test]
    async fn a_request_moves_on_past_a_refusing_and_a_breaking_router() {
        use std::sync::atomic::Ordering;
        let (dead, _held) = dead_addr();
        let (breaking, t1) = breaking_server().await;
        let (good, seen, t2) = good_server().await;
        let mut c = MultiClient::new(vec![dead, breaking.clone(), good.clone()])
            .with_timeout(Duration::from_secs(5));
        // Refused at the first, broken mid-request at the second, answered by the third.
        assert_eq!(c.insert("/r/a", "x").await.unwrap(), 7);
        assert_eq!(c.addr(), good);
        assert!(
            c.resent(),
            "the write was in flight when the connection broke"
        );
        assert_eq!(seen.load(Ordering::SeqCst), 1);
        // The next request stays on the good router, and was not resent.
        assert_eq!(c.delete("/r/a").await.unwrap(), 7);
        assert!(!c.resent());
        assert_eq!(seen.load(Ordering::SeqCst), 2);
        t2.abort();
        t1.abort();
    }

    #[tokio::test]
    async fn a_router_that_dies_between_requests_is_left_for_the_next() {
        let (a, seen_a, ta) = good_server().await;
        let (b, seen_b, tb) = good_server().await;
        let mut c = MultiClient::connect(vec![a.clone(), b.clone()])
            .await
            .unwrap();
        c.ping().await.unwrap();
        assert_eq!(c.addr(), a);
        ta.abort();
        // The accept loop is gone; the open connection's task too once the runtime drops it.
        // Make sure the old connection is really dead: wait until a fresh connect is refused.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while tokio::net::TcpStream::connect(&a).await.is_ok() {
            assert!(std::time::Instant::now() < deadline, "{a} still accepts");
            tokio::task::yield_now().await;
        }
        c.client = None; // as if the router's connection had been reset
        c.ping().await.unwrap();
        assert_eq!(c.addr(), b);
        assert!(!c.resent(), "connecting failed: nothing was in flight");
        assert_eq!(seen_a.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(seen_b.load(std::sync::atomic::Ordering::SeqCst), 1);
        tb.abort();
    }

    #[tokio::test]
    async fn when_every_router_fails_the_last_error_is_returned() {
        let (breaking, t) = breaking_server().await;
        let (dead, _held) = dead_addr();
        let mut c = MultiClient::new(vec![breaking, dead.clone()]);
        let err = c.ping().await.unwrap_err();
        assert!(is_transport(&err), "{err}");
        assert!(err.to_string().contains(&dead), "{err}");
        t.abort();
    }

    #[tokio::test]
    async fn error_replies_are_answers_not_failures() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let mut conn = Connection::new(s);
            while let Ok(Some(_)) = conn.read_frame().await {
                let _ = conn
                    .send(&Frame::Error("NOTFOUND /r/a does not exist".into()))
                    .await;
            }
        });
        let (good, seen, t2) = good_server().await;
        let mut c = MultiClient::connect(vec![addr.clone(), good])
            .await
            .unwrap();
        let err = c.delete("/r/a").await.unwrap_err();
        assert_eq!(err.code(), Some(crate::ErrorCode::NotFound));
        assert_eq!(c.addr(), addr, "stayed");
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 0);
        task.abort();
        t2.abort();
    }
}
