//! Loopback ports for tests, reserved so that nothing else takes them: not another test of this
//! process, not a test running in another process at the same time, and not the kernel handing
//! one out as the source port of an outgoing connection — neither between the moment a port is
//! chosen and the moment a child binds it, nor after that child is killed and restarted on it.
//!
//! Ports come in aligned blocks of [`BLOCK`] consecutive ports between [`LOW`] and the start of
//! the kernel's ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`, 32768 by default), so
//! the kernel never picks one as a source port. A block is claimed with an exclusive `flock` on
//! `$TMPDIR/cleave-test-ports/<base>.lock`, held until the test process exits (the kernel drops
//! an flock with its process, so a killed test never leaves a block claimed). Every test of the
//! workspace that needs a port it does not bind at once takes it from here (the e2e harness, the
//! operator's local-platform tests), so two of them never share a block.

use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::net::TcpListener;
use std::sync::Mutex;

/// Ports per block.
pub const BLOCK: u16 = 40;
/// The lowest port handed out (well above the usual fixed service ports).
pub const LOW: u16 = 20_000;

/// A claimed block of [`BLOCK`] ports: `base..base + BLOCK`, reserved (across processes) for as
/// long as this value lives.
#[derive(Debug)]
pub struct PortBlock {
    /// Its first port.
    pub base: u16,
    _lock: Flock<File>,
}

impl PortBlock {
    /// Its ports.
    pub fn ports(&self) -> std::ops::Range<u16> {
        self.base..self.base + BLOCK
    }
}

/// The first port of the kernel's ephemeral range (32768 when it cannot be read).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// Whether `port` can be bound on loopback now (nothing listens on it, no socket holds it).
fn bindable(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Claim a block whose ports are all free now. Panics when none is left.
pub fn reserve_block() -> PortBlock {
    let top = ephemeral_low().min(65_535 - BLOCK);
    assert!(
        top > LOW + BLOCK,
        "the ephemeral port range starts at {top}: no room for test ports above {LOW}"
    );
    let blocks = (top - LOW) / BLOCK;
    let dir = std::env::temp_dir().join("cleave-test-ports");
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    // Start at a random block, so that concurrent test processes rarely try the same one first.
    let first = rand::random::<u16>() % blocks;
    for i in 0..blocks {
        let base = LOW + ((first + i) % blocks) * BLOCK;
        let path = dir.join(format!("{base}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
        let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
            continue; // another test process holds it
        };
        // A process that does not use this module (a service of the machine) may hold one.
        if (base..base + BLOCK).all(bindable) {
            return PortBlock { base, _lock: lock };
        }
    }
    panic!("no free block of {BLOCK} test ports between {LOW} and {top}");
}

/// A loopback port nobody else will take: never the same twice in one test process, from a
/// block claimed by this process (see the module documentation). A port can be bound again
/// after its process is killed, and no other test or outgoing connection takes it meanwhile.
pub fn free_port() -> u16 {
    /// Blocks claimed by this process (kept for its life) and the next port of the last one.
    static STATE: Mutex<(Vec<PortBlock>, u16)> = Mutex::new((Vec::new(), 0));
    let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let (blocks, next) = &mut *state;
        match blocks.last() {
            Some(b) if b.ports().contains(next) => {
                let port = *next;
                *next += 1;
                if bindable(port) {
                    return port;
                }
            }
            _ => {
                let b = reserve_block();
                *next = b.base;
                blocks.push(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_below_the_ephemeral_range_and_blocks_are_exclusive() {
        let ports: Vec<u16> = (0..2 * BLOCK + 3).map(|_| free_port()).collect();
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ports.len(), "a port was handed out twice");
        assert!(ports.iter().all(|p| (LOW..ephemeral_low()).contains(p)));
        // A block claimed here cannot be claimed again while it is held (flock is per open
        // file, so this holds within one process as it does across processes).
        let a = reserve_block();
        for _ in 0..20 {
            let b = reserve_block();
            assert_ne!(a.base, b.base, "a held block was claimed twice");
        }
    }
}
