//! The responder CLI (`contain`, the real binary) against the real server binary: a whole
//! incident with the CLI alone, `--json` for scripts, errors naming the field, credentials
//! (file 0600, env over file), completions. `lookup_*` need `GET /v1/lookup`.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::{cli_token_create, fresh_database, BinServer};

fn contain_bin() -> &'static str {
    env!("CARGO_BIN_EXE_contain")
}

/// What one run of `contain` did.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    #[track_caller]
    fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "contain failed: {self:?}");
        &self.stdout
    }
    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

/// A server on a fresh database, a responder token, and a config home of its own.
struct Cli {
    server: BinServer,
    home: tempfile::TempDir,
    _db: tempfile::TempDir,
    url: String,
    token: String,
}

impl Cli {
    fn start() -> Cli {
        let db_dir = tempfile::tempdir().unwrap();
        let db = fresh_database(db_dir.path());
        let (ok, out) = cli_token_create(&db, "admin", "root");
        assert!(ok, "token create failed: {out}");
        let admin = out.trim().lines().last().unwrap().to_string();
        let server = BinServer::start(&db);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (_, token) = rt.block_on(server.api.new_token(&admin, "alice", "responder"));
        Cli {
            url: server.api.base.clone(),
            server,
            home: tempfile::tempdir().unwrap(),
            _db: db_dir,
            token,
        }
    }

    fn config_file(&self) -> PathBuf {
        self.home.path().join("edge-containment").join("cli.json")
    }

    /// Run `contain` with this config home, `EC_URL`/`EC_TOKEN` from `env`, `stdin` fed.
    fn run_with(&self, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Out {
        let mut cmd = Command::new(contain_bin());
        cmd.args(args)
            .env("XDG_CONFIG_HOME", self.home.path())
            .env("HOME", self.home.path())
            .env_remove("EC_URL")
            .env_remove("EC_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Run `contain` with the credentials in the environment.
    fn run(&self, args: &[&str]) -> Out {
        self.run_with(
            args,
            &[("EC_URL", &self.url), ("EC_TOKEN", &self.token)],
            "",
        )
    }

    fn login(&self) -> Out {
        self.run_with(
            &["login", "--url", &self.url, "--token-stdin"],
            &[],
            &self.token,
        )
    }

    fn open_incident(&self, title: &str) -> i64 {
        let v = self
            .run(&[
                "--json",
                "incident",
                "open",
                "--title",
                title,
                "--severity",
                "high",
            ])
            .json();
        v["id"].as_i64().unwrap()
    }
}

#[track_caller]
fn one_error_line(o: &Out) -> &str {
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr: {o:?}");
    assert!(lines[0].starts_with("error: "), "{o:?}");
    lines[0]
}

#[test]
fn contain_runs_a_whole_incident_from_open_to_export() {
    let c = Cli::start();
    let login = c.login();
    assert!(login.ok().contains("logged in to"), "{login:?}");
    let mode = std::fs::metadata(c.config_file())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "config file mode {mode:o}");
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(c.config_file()).unwrap()).unwrap();
    assert_eq!(saved["url"], c.url.as_str());
    assert_eq!(saved["token"], c.token.as_str());

    // From here on, only the saved file says where and who.
    let run = |args: &[&str]| c.run_with(args, &[], "");
    let open = run(&[
        "incident",
        "open",
        "--title",
        "Credential stuffing on /login",
        "--severity",
        "high",
        "--summary",
        "spike of failed logins",
        "--system",
        "web-login",
    ]);
    assert!(
        open.ok()
            .starts_with("opened incident #1 (P1, detection_analysis)"),
        "{open:?}"
    );
    let block = run(&[
        "block",
        "--ip",
        "203.0.113.7",
        "--incident",
        "1",
        "--reason",
        "stuffing source",
        "--expires-in",
        "1h",
    ]);
    assert!(
        block
            .ok()
            .contains("block #1 active: cidr 203.0.113.7/32 on incident 1"),
        "{block:?}"
    );
    let list = run(&["incident", "list"]);
    assert!(
        list.ok().contains("Credential stuffing on /login"),
        "{list:?}"
    );

    let now = run(&["now"]);
    let text = now.ok();
    assert!(text.contains("ACTIVE CONTAINMENT (1)"), "{text}");
    assert!(
        text.contains("cidr 203.0.113.7/32") && text.contains("stuffing source"),
        "{text}"
    );
    assert!(text.contains("EDGES: 0 reporting, 0 behind"), "{text}");
    // The preliminary report (2 h) and the first phase (30 min) are due within 4 h.
    assert!(
        text.contains("preliminary_report") && text.contains("phase_detection_analysis"),
        "{text}"
    );

    let lifted = run(&["lift", "1", "--reason", "blocked upstream"]);
    assert!(lifted.ok().contains("block #1 lifted"), "{lifted:?}");
    let notified = run(&[
        "notify",
        "1",
        "--audience",
        "staff",
        "--kind",
        "internal_alert",
        "--channel",
        "email",
        "--reference",
        "msg-1",
    ]);
    assert!(
        notified.ok().contains(
            "notification #1 recorded on incident 1: staff internal_alert via email (ref msg-1)"
        ),
        "{notified:?}"
    );

    // Closing with live containment is refused, showing what is live and the ways out.
    run(&[
        "isolate",
        "--pixel",
        "px-4711",
        "--incident",
        "1",
        "--reason",
        "skimmer",
    ])
    .ok();
    let refused = run(&["incident", "close", "1"]);
    assert_eq!(refused.code, 3, "{refused:?}");
    let first = refused.stderr.lines().next().unwrap();
    assert!(
        first.starts_with("error: phase: containment is still live"),
        "{refused:?}"
    );
    assert!(first.ends_with("(409 conflict)"), "{refused:?}");
    assert!(
        refused.stderr.contains("pixel px-4711 (pixel_kill)"),
        "{refused:?}"
    );
    assert!(refused.stderr.contains("--lift-all REASON"), "{refused:?}");
    let closed = run(&["incident", "close", "1", "--lift-all", "attack over"]);
    assert!(
        closed.ok().contains("closed") && closed.stdout.contains("lifted"),
        "{closed:?}"
    );
    let actions = run(&["--json", "incident", "show", "1"]).json()["actions"].clone();
    assert!(
        actions
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["status"] == "lifted"),
        "{actions}"
    );

    let file = c.home.path().join("incident-1.json");
    let export = run(&["export", "1", "-o", file.to_str().unwrap()]);
    assert!(
        export.ok().contains("wrote the record of incident 1"),
        "{export:?}"
    );
    let record: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(record["incident"]["id"], 1);
    assert_eq!(record["incident"]["status"], "closed");
    assert_eq!(record["actions"].as_array().unwrap().len(), 2);
    assert_eq!(record["notifications"][0]["reference"], "msg-1");
    assert_eq!(record["audit"]["chain_verified"], true);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let out = c.run_with(&["logout"], &[], "");
    assert!(out.ok().contains("removed"), "{out:?}");
    assert!(!c.config_file().exists());
    let after = c.run_with(&["incident", "list"], &[], "");
    assert_eq!(after.code, 4, "{after:?}");
    assert!(
        one_error_line(&after).contains("contain login"),
        "{after:?}"
    );
}

#[test]
fn contain_json_is_the_apis_json() {
    let c = Cli::start();
    let id = c.open_incident("JSON for scripts");
    let block = c
        .run(&[
            "--json",
            "block",
            "--ip",
            "198.51.100.0/24",
            "--incident",
            &id.to_string(),
            "--reason",
            "r",
            "--simulate",
        ])
        .json();
    assert_eq!(block["kind"], "block");
    assert_eq!(block["target"]["cidr"], "198.51.100.0/24");
    assert_eq!(block["mode"], "simulate");
    let list = c
        .run(&["--json", "incident", "list", "--status", "all"])
        .json();
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["id"], id);
    let show = c
        .run(&["incident", "show", &id.to_string(), "--json"])
        .json();
    assert_eq!(show["title"], "JSON for scripts");
    assert_eq!(show["actions"][0]["id"], block["id"]);
    assert!(show["timeline"].as_array().unwrap().len() >= 2, "{show}");
    let now = c.run(&["--json", "now"]).json();
    assert_eq!(now["actions"][0]["id"], block["id"]);
    assert!(
        now["deadlines_due_soon"].is_array() && now["edges_behind"].is_array(),
        "{now}"
    );
    // An API key given on standard input never shows up raw.
    let key = c.run_with(
        &[
            "--json",
            "block",
            "--api-key",
            "-",
            "--incident",
            &id.to_string(),
            "--reason",
            "leaked",
        ],
        &[("EC_URL", &c.url), ("EC_TOKEN", &c.token)],
        "sk_live_secret\n",
    );
    let v = key.json();
    assert_eq!(v["target"]["api_key_sha256"].as_str().unwrap().len(), 64);
    assert!(!key.stdout.contains("sk_live_secret"), "{key:?}");
}

#[test]
fn contain_errors_name_the_field_and_exit_non_zero() {
    let c = Cli::start();
    let id = c.open_incident("bad input").to_string();
    let bad = c.run(&[
        "block",
        "--ip",
        "10.0.0.300/8",
        "--incident",
        &id,
        "--reason",
        "r",
    ]);
    assert_eq!(bad.code, 3, "{bad:?}");
    let line = one_error_line(&bad);
    assert!(line.starts_with("error: target.cidr: "), "{line}");
    assert!(line.ends_with("(422 invalid_field)"), "{line}");
    assert!(bad.stdout.is_empty(), "{bad:?}");
    // A guard rail says how to insist.
    let wide = c.run(&[
        "block",
        "--ip",
        "0.0.0.0/0",
        "--incident",
        &id,
        "--reason",
        "r",
    ]);
    assert_eq!(wide.code, 3, "{wide:?}");
    assert!(
        wide.stderr.contains("guard_rail") && wide.stderr.contains("--force"),
        "{wide:?}"
    );
    // A duration the CLI cannot read never reaches the server.
    let dur = c.run(&[
        "block",
        "--ip",
        "192.0.2.1",
        "--incident",
        &id,
        "--reason",
        "r",
        "--expires-in",
        "1x",
    ]);
    assert_eq!(dur.code, 2, "{dur:?}");
    assert!(one_error_line(&dur).contains("--expires-in"), "{dur:?}");
    // Usage errors are clap's (exit 2): two targets at once.
    let two = c.run(&[
        "block",
        "--ip",
        "192.0.2.1",
        "--host",
        "h",
        "--incident",
        &id,
        "--reason",
        "r",
    ]);
    assert_eq!(two.code, 2, "{two:?}");
    let missing = c.run(&["incident", "show", "999"]);
    assert_eq!(missing.code, 3, "{missing:?}");
    assert!(
        one_error_line(&missing).contains("(404 not_found)"),
        "{missing:?}"
    );
}

#[test]
fn contain_credentials_refused_token_and_env_over_file() {
    let c = Cli::start();
    // A token the server refuses is not saved.
    let wrong = c.run_with(
        &["login", "--url", &c.url, "--token-stdin"],
        &[],
        "ecp_wrong",
    );
    assert_eq!(wrong.code, 3, "{wrong:?}");
    assert!(
        one_error_line(&wrong).contains("(401 unauthenticated)"),
        "{wrong:?}"
    );
    assert!(!c.config_file().exists());

    c.login().ok();
    c.run_with(&["incident", "list"], &[], "").ok();
    // EC_TOKEN beats the file: a wrong one fails with one line saying where it came from.
    let bad = c.run_with(&["incident", "list"], &[("EC_TOKEN", "ecp_wrong")], "");
    assert_eq!(bad.code, 3, "{bad:?}");
    let line = one_error_line(&bad);
    assert!(
        line.contains("401 unauthenticated") && line.contains("EC_TOKEN"),
        "{line}"
    );
    // EC_URL beats the file: a dead address is one line naming it.
    let dead = "http://127.0.0.1:1";
    let gone = c.run_with(&["incident", "list"], &[("EC_URL", dead)], "");
    assert_eq!(gone.code, 4, "{gone:?}");
    assert!(
        one_error_line(&gone).starts_with(&format!("error: cannot reach {dead}: ")),
        "{gone:?}"
    );
    // And the other way round: a file pointing nowhere, the env pointing at the server.
    let nowhere = format!(r#"{{"url": "{dead}", "token": "ecp_nothing"}}"#);
    std::fs::write(c.config_file(), nowhere).unwrap();
    c.run(&["incident", "list"]).ok();
    // A config file others can read is refused.
    std::fs::set_permissions(c.config_file(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let open = c.run_with(&["incident", "list"], &[], "");
    assert_eq!(open.code, 4, "{open:?}");
    assert!(one_error_line(&open).contains("chmod 600"), "{open:?}");
    drop(c.server);
}

#[test]
fn contain_completions_cover_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(contain_bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8_lossy(&out.stdout);
        // fish names long options without their dashes (`-l expires-in`).
        let flag = if shell == "fish" {
            "-l expires-in"
        } else {
            "--expires-in"
        };
        for sub in [
            "incident", "block", "isolate", "lift", "lookup", "export", flag,
        ] {
            assert!(script.contains(sub), "{shell} script lacks {sub}");
        }
    }
    let bash = Command::new(contain_bin())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&bash.stdout).contains("complete -F _contain"));
}

/// Needs `GET /v1/lookup` (the lead's API addition).
#[test]
fn lookup_tells_scripts_by_exit_code_whether_a_target_is_contained() {
    let c = Cli::start();
    let id = c.open_incident("lookup").to_string();
    c.run(&[
        "block",
        "--ip",
        "203.0.113.0/24",
        "--incident",
        &id,
        "--reason",
        "range",
    ])
    .ok();
    let hit = c.run(&["lookup", "--ip", "203.0.113.7"]);
    let text = hit.ok();
    assert!(
        text.contains("CONTAINED") && text.contains("matched 203.0.113.0/24"),
        "{text}"
    );
    let v = c.run(&["--json", "lookup", "--ip", "203.0.113.7"]).json();
    assert_eq!(v["contained"], true);
    assert_eq!(v["matches"][0]["matched"], "203.0.113.0/24");
    let miss = c.run(&["lookup", "--ip", "198.51.100.1"]);
    assert_eq!(miss.code, 1, "{miss:?}");
    assert!(miss.stdout.contains("not contained"), "{miss:?}");
    // A raw key from standard input, hashed by the server.
    let env = [("EC_URL", c.url.as_str()), ("EC_TOKEN", c.token.as_str())];
    c.run_with(
        &[
            "block",
            "--api-key",
            "-",
            "--incident",
            &id,
            "--reason",
            "leaked",
        ],
        &env,
        "sk_1\n",
    )
    .ok();
    let key = c.run_with(&["lookup", "--api-key", "-"], &env, "sk_1\n");
    assert_eq!(key.code, 0, "{key:?}");
    let other = c.run_with(&["lookup", "--api-key", "-"], &env, "sk_2\n");
    assert_eq!(other.code, 1, "{other:?}");
    // A bad value is the API's 400 naming the field (exit 3, not 1).
    let bad = c.run(&["lookup", "--ip", "not-an-ip"]);
    assert_eq!(bad.code, 3, "{bad:?}");
    assert!(one_error_line(&bad).starts_with("error: ip: "), "{bad:?}");
}
