//! The admin credential on the local platform, with real processes: every admin and
//! replication command is refused on a connection that has not presented the installation's
//! secret (`DATA/admin.secret`), a wrong secret is refused, and the right one is accepted —
//! while the operator, the followers (which fetch from their leaders) and the routers, all
//! holding it, keep the system working.

mod common;

use cleave_proto::{Client, Frame};
use common::*;
use std::time::Duration;

async fn ask(c: &mut Client, parts: &[&str]) -> Frame {
    let owned: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
    c.raw(&Frame::command(owned)).await.expect("an answer")
}

fn error(f: &Frame) -> &str {
    match f {
        Frame::Error(e) => e,
        other => panic!("not an error: {other:?}"),
    }
}

#[test]
fn admin_and_replication_commands_need_the_installation_secret() {
    if !have_router() {
        return;
    }
    let mut sys = System::new();
    sys.start();
    let s = sys.wait_ready();
    // Replication works with authentication on: writes are acknowledged by followers.
    let files = write(&sys.router(), "auth", 16);
    read_back(&sys.router(), &files);

    let secret = std::fs::read_to_string(sys.data.join("admin.secret")).unwrap();
    let secret = secret.trim().to_string();
    let leader = node(&s, "fc-a-0")["address"].as_str().unwrap().to_string();
    let follower = node(&s, "fc-a-1")["address"].as_str().unwrap().to_string();
    let router = sys.router();
    let table = rt().block_on(async { client(&router).await.table().await.unwrap() });
    let table_json = serde_json::to_string(&table).unwrap();
    rt().block_on(async {
        let node_commands: [&[&str]; 8] = [
            &["NODE.LEAD", "99"],
            &["NODE.FOLLOW", "99", "127.0.0.1:1"],
            &["NODE.FOLLOW", "99", "127.0.0.1:1", "LEARNER"],
            &["NODE.FREEZE", "1", "1000"],
            &["NODE.OWN", "99", "0-10", "fc-a"],
            &["REPL.FETCH", "1", "intruder", "0", "0", "0", "1048576"],
            &["REPL.INDEX", "1"],
            &["SNAP.NEXT", "1", "0"],
        ];
        for addr in [&leader, &follower] {
            let mut c = client(addr).await;
            for cmd in node_commands {
                let reply = ask(&mut c, cmd).await;
                assert!(
                    error(&reply).starts_with("NOAUTH"),
                    "{cmd:?} at {addr}: {reply:?}"
                );
            }
            // Reads of status stay open.
            assert!(matches!(
                ask(&mut c, &["NODE.STATUS"]).await,
                Frame::Bulk(_)
            ));
            // A wrong secret, then a right one with a wrong user, are refused too.
            let wrong = ask(&mut c, &["AUTH", "admin", "not-the-secret-at-all"]).await;
            assert!(error(&wrong).starts_with("WRONGPASS"), "{wrong:?}");
            let user = ask(&mut c, &["AUTH", "mallory", &secret]).await;
            assert!(error(&user).starts_with("WRONGPASS"), "{user:?}");
            let reply = ask(&mut c, &["NODE.LEAD", "99"]).await;
            assert!(error(&reply).starts_with("NOAUTH"), "{reply:?}");
            // The right secret passes the gate: REPL.INDEX is answered by the node itself.
            assert_eq!(ask(&mut c, &["AUTH", "admin", &secret]).await, Frame::ok());
            let reply = ask(&mut c, &["REPL.INDEX", "0"]).await;
            assert!(
                !matches!(&reply, Frame::Error(e) if e.starts_with("NOAUTH")),
                "{reply:?}"
            );
        }
        for addr in [sys.router(), sys.router2()] {
            let mut c = client(&addr).await;
            let reply = ask(&mut c, &["TABLE.PUSH", &table_json]).await;
            assert!(error(&reply).starts_with("NOAUTH"), "{reply:?}");
            // HELLO ... AUTH, as redis-cli --user/--pass and client libraries send it.
            let hello = ask(&mut c, &["HELLO", "3", "AUTH", "admin", &secret]).await;
            assert!(matches!(hello, Frame::Map(_)), "{hello:?}");
            assert_eq!(ask(&mut c, &["TABLE.PUSH", &table_json]).await, Frame::ok());
        }
    });
    // Nothing the refused commands asked for happened: same leader, same epoch, still serving.
    std::thread::sleep(Duration::from_millis(500));
    let after = sys.status();
    assert_eq!(node(&after, "fc-a-0")["role"], "leader");
    assert_eq!(after["epoch"], s["epoch"]);
    read_back(&sys.router(), &files);
}
