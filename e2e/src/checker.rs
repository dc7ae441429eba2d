//! The write checker: records every write a test issued and whether it was acknowledged, then
//! proves that each acknowledged write is readable unless a later write replaced it.

use cleave_proto::{Client, Selected};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
struct Attempt {
    value: Vec<u8>,
    acked: bool,
}

/// Writes per path, in the order they were issued.
#[derive(Debug, Default, Clone)]
pub struct Checker {
    writes: BTreeMap<String, Vec<Attempt>>,
}

impl Checker {
    /// Record a write and whether it was acknowledged.
    pub fn record(&mut self, path: &str, value: &[u8], acked: bool) {
        self.writes.entry(path.into()).or_default().push(Attempt {
            value: value.to_vec(),
            acked,
        });
    }

    /// How many writes were acknowledged.
    pub fn acked(&self) -> usize {
        self.writes.values().flatten().filter(|a| a.acked).count()
    }

    /// Merge another checker's records (writers on disjoint paths).
    pub fn merge(&mut self, other: Checker) {
        for (k, v) in other.writes {
            self.writes.entry(k).or_default().extend(v);
        }
    }

    /// Read every path through `client` and check it. Panics with the first violation.
    pub async fn verify(&self, client: &mut Client) {
        for (path, attempts) in &self.writes {
            let Some(last_acked) = attempts.iter().rposition(|a| a.acked) else {
                continue;
            };
            let allowed: Vec<&[u8]> = attempts[last_acked..]
                .iter()
                .map(|a| a.value.as_slice())
                .collect();
            let got = match client.select(path).await {
                Ok(Selected::File(b)) => b.to_vec(),
                other => panic!("acknowledged write to {path} is not readable: {other:?}"),
            };
            assert!(
                allowed.contains(&got.as_slice()),
                "{path}: read {} bytes that match neither the last acknowledged write nor a later attempt",
                got.len()
            );
        }
    }
}
