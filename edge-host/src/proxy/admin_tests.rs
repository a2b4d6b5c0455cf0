//! The admin port's connection limits, each with small configured values.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

async fn start(limits: AdminLimits) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let stats: Arc<dyn Fn() -> String + Send + Sync> = Arc::new(|| "x_total 1\n".to_string());
    tokio::spawn(serve_admin_with(stats, l, limits, std::future::pending()));
    addr
}

fn small(max_connections: usize) -> AdminLimits {
    AdminLimits {
        header_read_timeout: Duration::from_millis(300),
        max_connections,
    }
}

/// Sends `req` on a fresh connection and reads until the server closes it.
async fn exchange(addr: SocketAddr, req: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(req).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("server closes the connection")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

/// Time until the server closes `s`, reading (and discarding) whatever it sends.
async fn closed_after(s: &mut TcpStream) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("connection still open after 5 s"),
        }
    }
}

async fn ready_within(addr: SocketAddr) -> Duration {
    let start = Instant::now();
    let r = exchange(
        addr,
        b"GET /ready HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    start.elapsed()
}

#[tokio::test]
async fn routes_answer() {
    let addr = start(small(4)).await;
    let r = exchange(
        addr,
        b"GET /stats HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.ends_with("x_total 1\n"), "{r}");
    let r = exchange(
        addr,
        b"GET /nope HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
}

#[tokio::test]
async fn slow_headers_are_cut_and_others_still_served() {
    let addr = start(small(4)).await;
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /ready HTTP/1.1\r\n")
            .await
            .expect("write");
        slow.push(s);
    }
    // One header byte every 50 ms: the head is never complete within 300 ms.
    let mut s = slow.pop().expect("one");
    let dripping = tokio::spawn(async move {
        let start = Instant::now();
        for b in b"x-slow: 1234567890abcdef\r\n".iter().cycle().take(200) {
            if s.write_all(&[*b]).await.is_err() {
                return start.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("a dripping header was still accepted after 10 s");
    });
    assert!(ready_within(addr).await < Duration::from_secs(1));
    let mut stalled = slow.pop().expect("one");
    let held = closed_after(&mut stalled).await;
    assert!(held < Duration::from_secs(3), "stalled head held {held:?}");
    let dripped = dripping.await.expect("task");
    assert!(
        dripped < Duration::from_secs(3),
        "dripping head held {dripped:?}"
    );
}

#[tokio::test]
async fn idle_keep_alive_is_closed() {
    let addr = start(small(4)).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /ready HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).await.expect("answer");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let held = closed_after(&mut s).await;
    assert!(
        held < Duration::from_secs(3),
        "idle connection held {held:?}"
    );
}

#[tokio::test]
async fn connections_over_the_cap_get_503() {
    let addr = start(AdminLimits {
        header_read_timeout: Duration::from_secs(30),
        max_connections: 2,
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(addr).await.expect("connect"));
    }
    // The accept loop takes the held connections before the next one.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = exchange(addr, b"GET /ready HTTP/1.1\r\nhost: a\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    assert!(r.contains("too many admin connections"), "{r}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(ready_within(addr).await < Duration::from_secs(1));
}

#[tokio::test]
async fn a_body_is_refused_without_waiting_for_it() {
    let addr = start(small(4)).await;
    let start = Instant::now();
    // Announces 1,000 bytes and sends one.
    let r = exchange(
        addr,
        b"POST /ready HTTP/1.1\r\nhost: a\r\ncontent-length: 1000\r\n\r\nx",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    assert!(start.elapsed() < Duration::from_secs(1));
    let r = exchange(
        addr,
        b"POST /ready HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
}

#[tokio::test]
async fn header_count_and_size_are_bounded() {
    let addr = start(small(4)).await;
    let mut many = String::from("GET /ready HTTP/1.1\r\nhost: a\r\n");
    for i in 0..=ADMIN_MAX_HEADERS {
        many.push_str(&format!("x-h{i}: 1\r\n"));
    }
    many.push_str("\r\n");
    let r = exchange(addr, many.as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");
    let big = format!(
        "GET /ready HTTP/1.1\r\nhost: a\r\nx-big: {}\r\n\r\n",
        "a".repeat(ADMIN_MAX_HEADER_BYTES)
    );
    let r = exchange(addr, big.as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");
}
