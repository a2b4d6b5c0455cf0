//! Request variations a scanner or a skimmer operator would try against each rule kind,
//! sent with a raw HTTP/1.1 client (an HTTP library would normalise the very spellings under
//! test) to the real `edge_filter.wasm` in `edge-proxy`. A contained variation must never
//! reach the upstream; a control row must.

use std::time::Duration;

use edge_policy::{Isolation, KeyHash, RuleKind, Scope, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::filter::rig;

/// What a row expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// Not forwarded: the edge answered (rule reply), or the host refused the request.
    Contained,
    /// Forwarded to the upstream.
    Passes,
}
use Want::*;

struct Row {
    what: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    want: Want,
}

const fn row(
    what: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    want: Want,
) -> Row {
    Row {
        what,
        path,
        headers,
        want,
    }
}

/// The client every row comes from, unless the row sets `x-forwarded-for` itself.
const CLEAN: &[(&str, &str)] = &[("x-forwarded-for", "192.0.2.10")];

const ROWS: &[Row] = &[
    // Path block on /admin (rule 1).
    row("plain", "/admin", CLEAN, Contained),
    row("under", "/admin/users", CLEAN, Contained),
    row("double slash", "//admin", CLEAN, Contained),
    row("inner double slash", "/admin//users", CLEAN, Contained),
    row("many slashes", "////admin///x", CLEAN, Contained),
    row("dot segment", "/./admin", CLEAN, Contained),
    row("dot-dot", "/x/../admin", CLEAN, Contained),
    row("dot-dot above root", "/../../admin", CLEAN, Contained),
    row("encoded letter", "/%61dmin", CLEAN, Contained),
    row(
        "encoded letter upper hex",
        "/%61%64%6D%69%6E",
        CLEAN,
        Contained,
    ),
    row(
        "encoded letter lower hex",
        "/%61%64%6d%69%6e",
        CLEAN,
        Contained,
    ),
    row("encoded dot-dot", "/x/%2e%2e/admin", CLEAN, Contained),
    row("encoded dot-dot upper", "/x/%2E%2E/admin", CLEAN, Contained),
    row("half-encoded dot-dot", "/x/.%2e/admin", CLEAN, Contained),
    row("encoded slash", "/x%2F..%2Fadmin", CLEAN, Contained),
    row("encoded slash lower", "/x%2f..%2fadmin", CLEAN, Contained),
    row("encoded backslash", "/x%5C..%5Cadmin", CLEAN, Contained),
    row("backslash", "/x\\..\\admin", CLEAN, Contained),
    row("leading backslash", "\\admin", CLEAN, Contained),
    row("double encoding", "/x/%252e%252e/admin", CLEAN, Contained),
    row(
        "double-encoded slash",
        "/x%252F..%252Fadmin",
        CLEAN,
        Contained,
    ),
    row("segment parameter", "/admin;jsessionid=1", CLEAN, Contained),
    row("tomcat dot-dot-semicolon", "/x/..;/admin", CLEAN, Contained),
    row("parameter on a dot segment", "/.;/admin", CLEAN, Contained),
    row(
        "parameter on a dot-dot segment",
        "/x/..;x=1/admin",
        CLEAN,
        Contained,
    ),
    row("NUL", "/admin%00.png", CLEAN, Contained),
    row("trailing dot segment", "/admin/.", CLEAN, Contained),
    row("trailing slash", "/admin/", CLEAN, Contained),
    row("query", "/admin?x=1", CLEAN, Contained),
    row(
        "allow-listed prefix then encoded up",
        "/public/..%2Fadmin",
        CLEAN,
        Contained,
    ),
    row(
        "allow-listed prefix then up",
        "/public/../admin",
        CLEAN,
        Contained,
    ),
    row(
        "allow-listed after a blocked prefix",
        "/admin/..%2Fpublic",
        CLEAN,
        Contained,
    ),
    row("control: a longer name", "/administrator", CLEAN, Passes),
    row("control: allow-listed", "/public/page", CLEAN, Passes),
    row("control: dot in a name", "/a%2Eb", CLEAN, Passes),
    // Path isolation (block) on /checkout (rule 5).
    row("isolated", "/checkout/pay", CLEAN, Contained),
    row(
        "isolated, double slash",
        "//checkout//pay",
        CLEAN,
        Contained,
    ),
    row("isolated, encoded", "/%63heckout/pay", CLEAN, Contained),
    row("isolated, parameter", "/checkout;a=b/pay", CLEAN, Contained),
    row("isolated, dot-dot", "/static/../checkout", CLEAN, Contained),
    // Pixel block px-evil (rule 3) and pixel kill px-kill (rule 6).
    row("pixel beacon", "/p/px-evil.gif", CLEAN, Contained),
    row("pixel upper case", "/p/PX-EVIL.gif", CLEAN, Contained),
    row("pixel mixed case", "/p/Px-EvIl.gif", CLEAN, Contained),
    row("pixel double slash", "//p//px-evil.gif", CLEAN, Contained),
    row("pixel dot-dot", "/x/../p/px-evil.gif", CLEAN, Contained),
    row("pixel encoded id", "/p/px%2Devil.gif", CLEAN, Contained),
    row("pixel encoded route", "/%70/px-evil.gif", CLEAN, Contained),
    row("pixel query", "/collect?pid=px-evil", CLEAN, Contained),
    row(
        "pixel query repeated",
        "/collect?pid=ok&pid=px-evil",
        CLEAN,
        Contained,
    ),
    row(
        "pixel query encoded",
        "/collect?pid=px%2devil",
        CLEAN,
        Contained,
    ),
    row(
        "pixel query encoded name",
        "/collect?p%69d=px-evil",
        CLEAN,
        Contained,
    ),
    row(
        "pixel query upper",
        "/collect?pid=PX-EVIL",
        CLEAN,
        Contained,
    ),
    row(
        "pixel query semicolon",
        "/collect?x=1;pid=px-evil",
        CLEAN,
        Contained,
    ),
    row("pixel script", "/px/px-evil.js", CLEAN, Contained),
    row("pixel kill script", "/px/px-kill.js", CLEAN, Contained),
    row("pixel kill upper", "/px/PX-KILL.js", CLEAN, Contained),
    row("pixel kill encoded", "/px/px%2Dkill.js", CLEAN, Contained),
    row("control: other pixel", "/p/px-good.gif", CLEAN, Passes),
    // Address block 203.0.113.7 (rule 7), through one trusted hop.
    row(
        "address",
        "/",
        &[("x-forwarded-for", "203.0.113.7")],
        Contained,
    ),
    row(
        "address IPv4-mapped",
        "/",
        &[("x-forwarded-for", "::ffff:203.0.113.7")],
        Contained,
    ),
    row(
        "address IPv4-mapped upper",
        "/",
        &[("x-forwarded-for", "::FFFF:203.0.113.7")],
        Contained,
    ),
    row(
        "address IPv4-mapped hex",
        "/",
        &[("x-forwarded-for", "::ffff:cb00:7107")],
        Contained,
    ),
    row(
        "address IPv4-mapped long",
        "/",
        &[("x-forwarded-for", "0:0:0:0:0:ffff:203.0.113.7")],
        Contained,
    ),
    row(
        "address bracketed mapped with port",
        "/",
        &[("x-forwarded-for", "[::ffff:203.0.113.7]:4711")],
        Contained,
    ),
    row(
        "address with port",
        "/",
        &[("x-forwarded-for", "203.0.113.7:4711")],
        Contained,
    ),
    row(
        "address padded",
        "/",
        &[("x-forwarded-for", "  203.0.113.7  ")],
        Contained,
    ),
    row(
        "address in a second X-Forwarded-For header",
        "/",
        &[
            ("x-forwarded-for", "192.0.2.10"),
            ("x-forwarded-for", "203.0.113.7"),
        ],
        Contained,
    ),
    row(
        "control: spoofed left entry",
        "/",
        &[("x-forwarded-for", "203.0.113.7, 192.0.2.10")],
        Passes,
    ),
    // Host isolation on shop-evil.example (rule 8).
    row(
        "host",
        "/",
        &[
            ("host", "shop-evil.example"),
            ("x-forwarded-for", "192.0.2.10"),
        ],
        Contained,
    ),
    row(
        "host upper",
        "/",
        &[
            ("host", "SHOP-EVIL.EXAMPLE"),
            ("x-forwarded-for", "192.0.2.10"),
        ],
        Contained,
    ),
    row(
        "host trailing dot",
        "/",
        &[
            ("host", "shop-evil.example."),
            ("x-forwarded-for", "192.0.2.10"),
        ],
        Contained,
    ),
    row(
        "host port",
        "/",
        &[
            ("host", "shop-evil.example:8080"),
            ("x-forwarded-for", "192.0.2.10"),
        ],
        Contained,
    ),
    row(
        "host trailing dot and port",
        "/",
        &[
            ("host", "shop-evil.example.:80"),
            ("x-forwarded-for", "192.0.2.10"),
        ],
        Contained,
    ),
    // API key block on stolen-key (rule 4).
    row(
        "key",
        "/",
        &[
            ("x-api-key", "stolen-key"),
            ("x-forwarded-for", "192.0.2.10"),
        ],
        Contained,
    ),
    row(
        "key header upper",
        "/",
        &[
            ("X-API-KEY", "stolen-key"),
            ("x-forwarded-for", "192.0.2.10"),
        ],
        Contained,
    ),
    row(
        "key padded",
        "/",
        &[
            ("x-api-key", "  stolen-key "),
            ("x-forwarded-for", "192.0.2.10"),
        ],
        Contained,
    ),
    row(
        "key second header",
        "/",
        &[
            ("x-api-key", "fine"),
            ("x-api-key", "stolen-key"),
            ("x-forwarded-for", "192.0.2.10"),
        ],
        Contained,
    ),
    row(
        "key in a list",
        "/",
        &[
            ("x-api-key", "fine, stolen-key"),
            ("x-forwarded-for", "192.0.2.10"),
        ],
        Contained,
    ),
    row(
        "key as bearer",
        "/",
        &[
            ("authorization", "Bearer stolen-key"),
            ("x-forwarded-for", "192.0.2.10"),
        ],
        Contained,
    ),
    row(
        "key as bearer, lower scheme",
        "/",
        &[
            ("authorization", "bearer stolen-key"),
            ("x-forwarded-for", "192.0.2.10"),
        ],
        Contained,
    ),
    row("key in the query", "/?api_key=stolen-key", CLEAN, Contained),
    row(
        "key in the query, encoded",
        "/?api_key=stolen%2Dkey",
        CLEAN,
        Contained,
    ),
    row(
        "key in the query, repeated",
        "/?api_key=fine&api_key=stolen-key",
        CLEAN,
        Contained,
    ),
    row(
        "control: another key",
        "/",
        &[("x-api-key", "fine"), ("x-forwarded-for", "192.0.2.10")],
        Passes,
    ),
];

/// Sends one raw request and reads the answer: (status, whether the upstream answered).
async fn raw_get(edge: &Edge, path: &str, headers: &[(&str, &str)]) -> (u16, bool, String) {
    let addr = edge.url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str("host: shop.example\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("answer within 10 s")
        .expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.contains("upstream saw "), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_variations_do_not_escape_any_rule_kind() {
    assert!(ROWS.len() >= 60, "{} rows", ROWS.len());
    let rig = rig(
        vec![
            rule(1, RuleKind::Block(Target::PathPrefix("/admin".into()))),
            rule(2, RuleKind::Allow(Target::PathPrefix("/public".into()))),
            rule(3, RuleKind::Block(Target::Pixel("px-evil".into()))),
            rule(
                4,
                RuleKind::Block(Target::ApiKey(KeyHash::of("stolen-key"))),
            ),
            rule(
                5,
                RuleKind::Isolate {
                    scope: Scope::PathPrefix("/checkout".into()),
                    action: Isolation::Block,
                },
            ),
            rule(
                6,
                RuleKind::Isolate {
                    scope: Scope::Pixel("px-kill".into()),
                    action: Isolation::PixelKill,
                },
            ),
            block_ip(7, "203.0.113.7"),
            rule(
                8,
                RuleKind::Isolate {
                    scope: Scope::Host("shop-evil.example".into()),
                    action: Isolation::Block,
                },
            ),
        ],
        |cfg| cfg.api_key_query = vec!["api_key".into()],
        2,
    )
    .await;
    let mut escaped = Vec::new();
    for r in ROWS {
        let (status, upstream, text) = raw_get(&rig.edge, r.path, r.headers).await;
        let ok = match r.want {
            Contained => !upstream,
            Passes => upstream && status == 200,
        };
        if !ok {
            escaped.push(format!(
                "{} ({} {:?}): want {:?}, got {status}: {}",
                r.what,
                r.path,
                r.headers,
                r.want,
                text.lines().next().unwrap_or("")
            ));
        }
    }
    assert!(
        escaped.is_empty(),
        "{} of {} variations went the wrong way:\n{}",
        escaped.len(),
        ROWS.len(),
        escaped.join("\n")
    );
}
