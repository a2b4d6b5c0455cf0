//! Tests of the command line: parsing, defaults, refusals.

use super::*;
use clap::CommandFactory;

#[test]
fn cli_is_well_formed() {
    Cli::command().debug_assert();
}

#[test]
fn years_before_is_calendar_years() {
    let t = crate::clock::parse_rfc3339("2028-02-29T12:00:00Z").unwrap();
    assert_eq!(
        crate::clock::rfc3339(years_before(t, 5)),
        "2023-02-28T12:00:00.000Z"
    );
    let t = crate::clock::parse_rfc3339("2026-03-01T00:00:00Z").unwrap();
    assert_eq!(
        crate::clock::rfc3339(years_before(t, -5)),
        "2031-03-01T00:00:00.000Z"
    );
}

#[test]
fn wake_interval_and_token_ttl_flags() {
    let serve = |args: &[&str]| match Cli::try_parse_from(
        ["cp", "serve"].iter().chain(args.iter()).copied(),
    ) {
        Ok(Cli {
            command: Some(Command::Serve(a)),
            ..
        }) => Ok(a.settings().unwrap()),
        Ok(other) => panic!("parsed as {other:?}"),
        Err(e) => Err(e.to_string()),
    };
    let d = serve(&[]).unwrap();
    assert_eq!(parse_overlap("90s"), Ok(90_000));
    assert_eq!(parse_overlap("24h"), Ok(86_400_000));
    assert_eq!(parse_overlap("0s"), Ok(0));
    for bad in ["", "5", "h", "-1h", "5w", "91d", "99999999999999999d"] {
        assert!(parse_overlap(bad).is_err(), "{bad}");
    }
    assert_eq!(
        d.policy_wake_interval,
        Duration::from_millis(crate::DEFAULT_POLICY_WAKE_INTERVAL_MS)
    );
    assert_eq!(
        d.token_cache_ttl,
        Duration::from_millis(crate::DEFAULT_TOKEN_CACHE_TTL_MS)
    );
    let s = serve(&[
        "--policy-wake-interval-ms",
        "0",
        "--token-cache-ttl-ms",
        "2500",
    ])
    .unwrap();
    assert_eq!(s.policy_wake_interval, Duration::ZERO);
    assert_eq!(s.token_cache_ttl, Duration::from_millis(2500));
    for (bad, flag) in [
        (
            &["--policy-wake-interval-ms", "10001"][..],
            "--policy-wake-interval-ms",
        ),
        (
            &["--policy-wake-interval-ms=-1"],
            "--policy-wake-interval-ms",
        ),
        (&["--token-cache-ttl-ms", "60001"], "--token-cache-ttl-ms"),
        (&["--token-cache-ttl-ms", "soon"], "--token-cache-ttl-ms"),
    ] {
        let err = serve(bad).unwrap_err();
        assert!(err.contains(flag), "{bad:?}: {err}");
    }
}

#[test]
fn connection_limit_flags() {
    let parse = |args: &[&str]| match Cli::try_parse_from(
        ["cp", "serve"].iter().chain(args.iter()).copied(),
    ) {
        Ok(Cli {
            command: Some(Command::Serve(a)),
            ..
        }) => Ok(a.settings().unwrap().conn),
        Ok(other) => panic!("parsed as {other:?}"),
        Err(e) => Err(e.to_string()),
    };
    let d = parse(&[]).unwrap();
    assert_eq!(
        d.header_read_timeout,
        Duration::from_millis(server::DEFAULT_HEADER_READ_TIMEOUT_MS)
    );
    assert_eq!(d.max_headers, server::DEFAULT_MAX_HEADERS);
    assert_eq!(d.max_connections, server::FALLBACK_MAX_CONNECTIONS);
    let c = parse(&[
        "--header-read-timeout-ms",
        "250",
        "--body-read-timeout-ms",
        "300",
        "--idle-timeout-ms",
        "400",
        "--max-connections",
        "7",
        "--max-headers",
        "20",
        "--max-header-bytes",
        "4096",
    ])
    .unwrap();
    assert_eq!(
        (
            c.header_read_timeout,
            c.body_read_timeout,
            c.idle_timeout,
            c.max_connections,
            c.max_headers,
            c.max_header_bytes
        ),
        (
            Duration::from_millis(250),
            Duration::from_millis(300),
            Duration::from_millis(400),
            7,
            20,
            4096
        )
    );
    for (bad, flag) in [
        (
            &["--header-read-timeout-ms", "0"][..],
            "--header-read-timeout-ms",
        ),
        (&["--max-headers", "0"], "--max-headers"),
        (&["--max-header-bytes", "10"], "--max-header-bytes"),
        (&["--idle-timeout-ms", "soon"], "--idle-timeout-ms"),
    ] {
        let err = parse(bad).unwrap_err();
        assert!(err.contains(flag), "{bad:?}: {err}");
    }
}

#[test]
fn purge_refuses_fewer_than_five_years() {
    assert!(Cli::try_parse_from(["cp", "purge", "--older-than-years", "4"]).is_err());
    assert!(Cli::try_parse_from(["cp", "purge", "--older-than-years", "5", "--dry-run"]).is_ok());
}
