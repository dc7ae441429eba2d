//! `cleave stat REMOTE [--json]`: a file's or directory's metadata, as `key: value` lines or one
//! JSON object (`path, kind, size, etag, type, modified, modifiedMs, seq`).

use super::{connect, remote_path, Routers};
use crate::error::Result;
use cleave_proto::command::Stat;
use cleave_proto::FilePath;

/// Arguments of `cleave stat`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Remote file or directory, e.g. `/photos/cat.jpg`.
    pub remote: String,
    /// Print one JSON object instead of `key: value` lines.
    #[arg(long)]
    pub json: bool,
}

/// Run `cleave stat`.
pub async fn run(routers: &Routers, args: Args) -> Result<()> {
    let path = remote_path(&args.remote)?;
    let mut client = connect(routers).await?;
    let stat = client
        .stat(path.as_str())
        .await
        .map_err(|e| routers.error(e))?;
    print!("{}", render(&path, &stat, args.json));
    Ok(())
}

/// The text `cleave stat` prints.
pub fn render(path: &FilePath, stat: &Stat, json: bool) -> String {
    if json {
        let v = serde_json::json!({
            "path": path.as_str(),
            "kind": stat.kind,
            "size": stat.size,
            "etag": stat.etag,
            "type": stat.content_type,
            "modified": iso8601(stat.modified_ms),
            "modifiedMs": stat.modified_ms,
            "seq": stat.seq,
        });
        return format!("{v}\n");
    }
    format!(
        "path:     {path}\nkind:     {}\nsize:     {}\netag:     {}\ntype:     {}\nmodified: {}\nseq:      {}\n",
        stat.kind,
        stat.size,
        stat.etag,
        stat.content_type,
        iso8601(stat.modified_ms),
        stat.seq
    )
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
pub fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_iso8601() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(iso8601(1_767_225_599_000), "2025-12-31T23:59:59.000Z");
    }

    #[test]
    fn stat_renders_as_lines_or_json() {
        let path = FilePath::parse("/a/b").unwrap();
        let stat = Stat {
            kind: "file".into(),
            size: 3,
            etag: "e".into(),
            content_type: "text/plain".into(),
            modified_ms: 0,
            seq: 9,
        };
        let text = render(&path, &stat, false);
        assert!(
            text.contains("size:     3\n") && text.contains("seq:      9\n"),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&render(&path, &stat, true)).unwrap();
        assert_eq!(v["size"], 3);
        assert_eq!(v["type"], "text/plain");
        assert_eq!(v["path"], "/a/b");
    }
}
