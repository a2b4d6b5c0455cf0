//! The quick start (issue #14): the commands it prints work as printed (ids captured, the
//! edge enforcing before the 403 is shown, hits, lift), a busy port is one line naming the
//! flag, and a second run on the same `--data-dir` resumes the first one's database.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use edge_testkit::Proc;

use crate::common::temp_dir;

fn quickstart(data: &Path, cp_listen: &str) -> Command {
    let mut cmd = Command::new(edge_testkit::bin("quickstart").unwrap());
    cmd.args([
        "--cp-listen",
        cp_listen,
        "--edge-listen",
        "127.0.0.1:0",
        "--upstream-listen",
        "127.0.0.1:0",
        "--dpo-contact",
        "Dana Privacy, dpo@example.com",
    ])
    .arg("--data-dir")
    .arg(data)
    .arg("--wasm")
    .arg(edge_testkit::filter_wasm().unwrap());
    cmd
}

/// The printed `$ ` commands, in order, as one script.
fn script(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("$ "))
        .collect();
    assert_eq!(lines.len(), 5, "{text}");
    format!("set -e\n{}\n", lines.join("\n"))
}

fn run(script: &str) -> String {
    let out = Command::new("bash").arg("-c").arg(script).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script}\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_printed_commands_work_as_printed_and_a_second_run_resumes() {
    let dir = temp_dir("qs");
    let data = dir.path().join("data");
    let (mut qs, _) = tokio::task::block_in_place(|| {
        Proc::start(
            "quickstart",
            quickstart(&data, "127.0.0.1:0"),
            "Press Ctrl-C to stop.",
        )
    });
    let text = qs.output_text();
    // The console and a sign-in token come first.
    let first: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("  "))
        .take(2)
        .collect();
    assert!(first[0].trim_start().starts_with("console"), "{text}");
    assert!(first[0].contains("/console"), "{text}");
    assert!(first[1].contains("responder token  ecp_"), "{text}");
    assert!(text.contains("new:"), "{text}");

    let out = tokio::task::block_in_place(|| run(&script(&text)));
    let lines: Vec<&str> = out.lines().collect();
    let incident: i64 = lines[0].strip_prefix("incident ").unwrap().parse().unwrap();
    let action: i64 = lines[1].strip_prefix("action ").unwrap().parse().unwrap();
    assert!(incident >= 1 && action >= 1, "{out}");
    assert!(
        out.contains("HTTP/1.1 403"),
        "the edge never answered 403: {out}"
    );
    assert!(out.contains("\"rule\":"), "{out}");
    // Step 4's JSON then step 5's status.
    let json_start = out.find("{\n").expect("hits JSON");
    let json_end = out.rfind('}').unwrap();
    let hits: serde_json::Value = serde_json::from_str(&out[json_start..=json_end]).unwrap();
    assert_eq!(hits["id"], action, "{out}");
    assert!(hits["hits"]["total"].as_u64().unwrap() >= 1, "{out}");
    assert_eq!(hits["hits"]["report_interval_secs"], 5, "{out}");
    assert!(hits["hits"]["last_report_at"].is_string(), "{out}");
    assert_eq!(lines.last().copied(), Some("lifted"), "{out}");
    assert!(
        tokio::task::block_in_place(|| qs.stop("INT", Duration::from_secs(15))),
        "quickstart did not stop cleanly on Ctrl-C:\n{}",
        qs.output_text()
    );

    // Again on the same directory: the same database, the same tokens, new ids.
    let (mut again, _) = tokio::task::block_in_place(|| {
        Proc::start(
            "quickstart",
            quickstart(&data, "127.0.0.1:0"),
            "Press Ctrl-C to stop.",
        )
    });
    let text2 = again.output_text();
    assert!(text2.contains("resumed:"), "{text2}");
    let token = |t: &str| {
        t.lines()
            .find(|l| l.contains("responder token  ecp_"))
            .unwrap()
            .to_string()
    };
    assert_eq!(token(&text), token(&text2));
    let out = tokio::task::block_in_place(|| run(&script(&text2)));
    let second: i64 = out
        .lines()
        .next()
        .unwrap()
        .strip_prefix("incident ")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(second, incident + 1, "{out}");
    assert!(tokio::task::block_in_place(
        || again.stop("INT", Duration::from_secs(15))
    ));
}

#[test]
fn a_busy_port_is_one_line_naming_the_flag() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = temp_dir("qs-busy");
    let out = quickstart(&dir.path().join("data"), &addr)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with(&format!("quickstart: --cp-listen {addr}: ")),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Nothing was started or written.
    assert!(!dir.path().join("data").join("edge-containment.db").exists());
}
