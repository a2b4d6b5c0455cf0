//! Connection limits with small configured values: slow headers, a stalled body, idle
//! keep-alives and fresh silent connections are closed (or answered 408), connections over
//! the cap get 503, oversized heads 431 and announced oversized bodies 413 at once — all
//! with the API's error body — while `/healthz` keeps answering other clients.

use std::time::Duration;

use control_plane::server::ConnLimits;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::common::{parse_raw, raw_exchange, read_until_closed, TestServer};

/// A generous bound: these tests wait for the server, never assert on how fast it is.
const GUARD: Duration = Duration::from_secs(20);

async fn server(limits: ConnLimits) -> TestServer {
    let mut settings = TestServer::settings();
    settings.conn = limits;
    TestServer::start_with(settings).await
}

fn short() -> ConnLimits {
    ConnLimits {
        header_read_timeout: Duration::from_millis(300),
        body_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        ..ConnLimits::default()
    }
}

async fn closed_count(s: &TestServer, reason: &str) -> u64 {
    let req = b"GET /metrics HTTP/1.1\r\nHost: cp\r\nConnection: close\r\n\r\n";
    let text = String::from_utf8(raw_exchange(s.api.addr, req).await.0).unwrap();
    let key = format!("edge_cp_connections_closed_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// `/healthz` on a new connection (a pooled one may just have been closed as idle).
async fn healthz_ok(s: &TestServer) {
    let req = b"GET /healthz HTTP/1.1\r\nHost: cp\r\nConnection: close\r\n\r\n";
    let (got, _) = raw_exchange(s.api.addr, req).await;
    let (status, body) = parse_raw(&got);
    assert_eq!((status, &body["status"]), (200, &serde_json::json!("ok")));
}

#[tokio::test]
async fn slow_headers_are_cut_off_while_others_are_served() {
    let s = server(short()).await;
    let mut slow = TcpStream::connect(s.api.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: cp\r\nX-Slow: ")
        .await
        .unwrap();
    let (mut rd, mut wr) = slow.into_split();
    // One header byte every 50 ms, for far longer than the header-read timeout.
    let dribble = tokio::spawn(async move {
        for _ in 0..400 {
            if wr.write_all(b"a").await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    });
    for _ in 0..3 {
        healthz_ok(&s).await;
    }
    let got = tokio::time::timeout(GUARD, async {
        use tokio::io::AsyncReadExt;
        let mut buf = Vec::new();
        let _ = rd.read_to_end(&mut buf).await;
        buf
    })
    .await
    .expect("the slow connection was not closed");
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    assert!(dribble.await.unwrap(), "the slow writer was never cut off");
    assert!(closed_count(&s, "header_timeout").await >= 1);

    // A connection that sends nothing at all is closed the same way.
    let mut silent = TcpStream::connect(s.api.addr).await.unwrap();
    let (got, closed) = read_until_closed(&mut silent, GUARD).await;
    assert!(closed && got.is_empty());
    healthz_ok(&s).await;
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_writes_nothing() {
    let s = server(short()).await;
    let before = s.counts().await;
    let head = format!(
        "POST /v1/incidents HTTP/1.1\r\nHost: cp\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{",
        s.admin
    );
    let mut c = TcpStream::connect(s.api.addr).await.unwrap();
    c.write_all(head.as_bytes()).await.unwrap();
    healthz_ok(&s).await;
    let (got, closed) = read_until_closed(&mut c, GUARD).await;
    assert!(closed, "the stalled connection stayed open");
    let (status, body) = parse_raw(&got);
    assert_eq!(status, 408, "{}", String::from_utf8_lossy(&got));
    assert_eq!(body["error"]["code"], "body_timeout", "{body}");
    assert_eq!(body["error"]["field"], "body", "{body}");
    assert_eq!(before, s.counts().await);
    healthz_ok(&s).await;
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let s = server(short()).await;
    let mut c = TcpStream::connect(s.api.addr).await.unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: cp\r\n\r\n")
        .await
        .unwrap();
    let (got, closed) = read_until_closed(&mut c, GUARD).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        !text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    assert!(closed, "the idle connection stayed open");
    assert!(closed_count(&s, "idle_timeout").await >= 1);
}

#[tokio::test]
async fn connections_over_the_cap_get_503_with_the_error_body() {
    let s = server(ConnLimits {
        max_connections: 3,
        header_read_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
        ..ConnLimits::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(s.api.addr).await.unwrap());
    }
    let (got, closed) =
        raw_exchange(s.api.addr, b"GET /healthz HTTP/1.1\r\nHost: cp\r\n\r\n").await;
    assert!(closed);
    let (status, body) = parse_raw(&got);
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&got));
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains('3'));
    // Once a held connection goes, new ones are served again.
    drop(held.pop());
    let served = tokio::time::timeout(GUARD, async {
        loop {
            let (got, _) = raw_exchange(
                s.api.addr,
                b"GET /healthz HTTP/1.1\r\nHost: cp\r\nConnection: close\r\n\r\n",
            )
            .await;
            if parse_raw(&got).0 == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(served.is_ok(), "no connection was served after one closed");
}

#[tokio::test]
async fn oversized_heads_get_431_and_announced_bodies_413_at_once() {
    let s = server(ConnLimits {
        max_headers: 20,
        max_header_bytes: 4096,
        ..short()
    })
    .await;
    let many: String = (0..30).map(|i| format!("X-H{i}: v\r\n")).collect();
    let req = format!("GET /healthz HTTP/1.1\r\nHost: cp\r\n{many}Connection: close\r\n\r\n");
    let (got, _) = raw_exchange(s.api.addr, req.as_bytes()).await;
    let (status, body) = parse_raw(&got);
    assert_eq!(status, 431, "{}", String::from_utf8_lossy(&got));
    assert_eq!(body["error"]["code"], "headers_too_large", "{body}");

    let big = "v".repeat(5000);
    let req =
        format!("GET /healthz HTTP/1.1\r\nHost: cp\r\nX-Big: {big}\r\nConnection: close\r\n\r\n");
    let (got, _) = raw_exchange(s.api.addr, req.as_bytes()).await;
    let (status, body) = parse_raw(&got);
    assert_eq!(status, 431, "{}", String::from_utf8_lossy(&got));
    assert_eq!(body["error"]["field"], "headers", "{body}");

    // 100 MB announced, nothing sent: refused before a byte of it is read, token or not.
    let before = s.counts().await;
    for auth in [
        String::new(),
        format!("Authorization: Bearer {}\r\n", s.admin),
    ] {
        let req = format!(
            "POST /v1/incidents HTTP/1.1\r\nHost: cp\r\n{auth}Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
        );
        let (got, _) = raw_exchange(s.api.addr, req.as_bytes()).await;
        let (status, body) = parse_raw(&got);
        assert_eq!(status, 413, "{}", String::from_utf8_lossy(&got));
        assert_eq!(body["error"]["code"], "body_too_large", "{body}");
    }
    assert_eq!(before, s.counts().await);
    healthz_ok(&s).await;
}
