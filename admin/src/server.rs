//! The admin HTTP server (warp): `/metrics`, `/healthz` (alias `/livez`) and `/readyz`.
//!
//! `/metrics` answers in the Prometheus text format 0.0.4, or in OpenMetrics text when the
//! scraper's `Accept` header asks for `application/openmetrics-text` (as Prometheus does).
//! `/healthz` and `/readyz` answer `200 ok` or `503` with the failing check's reason, so a
//! person running `curl` sees why.

use crate::{Admin, Error};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use warp::http::StatusCode;
use warp::Filter;

/// Content type of the Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of OpenMetrics text.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Bind the admin address (`host:port`; port 0 picks a free port).
pub async fn bind(addr: &str) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).await.map_err(|source| Error::Bind {
        addr: addr.into(),
        source,
    })
}

fn text(status: StatusCode, body: String, ctype: &'static str) -> impl warp::Reply {
    warp::reply::with_status(
        warp::reply::with_header(body, "content-type", ctype),
        status,
    )
}

fn check(result: Result<(), String>) -> impl warp::Reply {
    match result {
        Ok(()) => text(StatusCode::OK, "ok\n".into(), "text/plain; charset=utf-8"),
        Err(why) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{why}\n"),
            "text/plain; charset=utf-8",
        ),
    }
}

/// The routes over `admin`.
pub fn routes(
    admin: Arc<Admin>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    let a = admin.clone();
    let metrics = warp::path("metrics")
        .and(warp::path::end())
        .and(warp::header::optional::<String>("accept"))
        .map(move |accept: Option<String>| {
            let om = accept.is_some_and(|a| a.contains("application/openmetrics-text"));
            let ctype = if om {
                OPENMETRICS_TEXT
            } else {
                PROMETHEUS_TEXT
            };
            text(StatusCode::OK, a.render(om), ctype)
        });
    let a = admin.clone();
    let healthz = warp::path("healthz")
        .or(warp::path("livez"))
        .unify()
        .and(warp::path::end())
        .map(move || check(a.live()));
    let readyz = warp::path("readyz")
        .and(warp::path::end())
        .map(move || check(admin.ready()));
    warp::get().and(metrics.or(healthz).or(readyz))
}

/// Serve the admin endpoints on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    admin: Arc<Admin>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    warp::serve(routes(admin))
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
}

/// Serve on `listener` (from [`bind`]) in a background task until `shutdown`; returns the
/// bound address, logged and printed on stdout as `<name> admin on <addr>` (tests that pass
/// port 0 read it). Binding first and serving later lets a binary bind before it announces
/// itself ready: connections made in between wait in the listen backlog.
pub fn spawn(
    name: &str,
    listener: TcpListener,
    admin: Arc<Admin>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<SocketAddr, Error> {
    let bound = listener.local_addr().map_err(|source| Error::Bind {
        addr: "admin listener".into(),
        source,
    })?;
    tracing::info!("{name}: admin HTTP (/metrics, /healthz, /readyz) on {bound}");
    println!("{name} admin on {bound}");
    tokio::spawn(serve(listener, admin, shutdown));
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::get;
    use prometheus_client::metrics::counter::Counter;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test]
    async fn serves_metrics_and_health_over_http() {
        let mut admin = Admin::new();
        let requests: Counter = Counter::default();
        admin
            .registry()
            .register("cleave_test_requests", "Requests.", requests.clone());
        let ready = Arc::new(AtomicBool::new(false));
        let r = ready.clone();
        admin.readiness(move || {
            if r.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err("not in sync".into())
            }
        });
        requests.inc_by(3);
        let listener = bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, Arc::new(admin), async {
            let _ = rx.await;
        }));

        let (code, body) = get(&addr, "/metrics").await.unwrap();
        assert_eq!(code, 200);
        let lines = body.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
        let s = scrape
            .samples
            .iter()
            .find(|s| s.metric == "cleave_test_requests_total")
            .expect("counter");
        assert!(matches!(s.value, prometheus_parse::Value::Counter(v) if v == 3.0));

        assert_eq!(get(&addr, "/healthz").await.unwrap().0, 200);
        let (code, body) = get(&addr, "/readyz").await.unwrap();
        assert_eq!((code, body.as_str()), (503, "not in sync\n"));
        ready.store(true, Ordering::Relaxed);
        assert_eq!(get(&addr, "/readyz").await.unwrap(), (200, "ok\n".into()));
        assert_eq!(get(&addr, "/nope").await.unwrap().0, 404);
        tx.send(()).unwrap();
        server.await.unwrap();
    }

    #[test]
    fn openmetrics_on_request() {
        let mut admin = Admin::new();
        let c: Counter = Counter::default();
        admin
            .registry()
            .register("cleave_test_things", "Things.", c);
        assert!(admin.render(true).ends_with("# EOF\n"));
        assert!(!admin.render(false).contains("# EOF"));
    }

    #[test]
    fn command_labels_are_bounded() {
        assert_eq!(crate::command_label(b"insert"), "INSERT");
        assert_eq!(crate::command_label(b"REPL.FETCH"), "REPL.FETCH");
        assert_eq!(crate::command_label(b"a b"), "other");
        assert_eq!(crate::command_label(&[b'A'; 40]), "other");
    }
}
