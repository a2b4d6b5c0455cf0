//! `contain`: the responders' command-line tool, a plain HTTP client of the control plane's
//! JSON API (API.md). Tables for people, `--json` (the API's own JSON) for scripts; errors
//! are one line naming the field, exit codes in [`args::AFTER_HELP`].

mod act;
mod args;
mod client;
mod config;
mod duration;
mod incident;
mod login;
mod render;
mod status;

use std::io::Read;
use std::process::ExitCode;

use clap::Parser;
use serde_json::Value;

use args::{Cli, Cmd};
use client::{Client, Failure};

/// What every command gets: output mode and the time tables are rendered at.
pub struct Ctx {
    pub json: bool,
    pub now_ms: i64,
}

impl Ctx {
    /// Print the API's JSON (`--json`), else the human text.
    pub fn out(
        &self,
        v: &Value,
        text: impl FnOnce() -> Result<String, Failure>,
    ) -> Result<(), Failure> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(v).expect("serialisable"));
        } else {
            println!("{}", text()?);
        }
        Ok(())
    }
}

/// A client with the credentials in force (env, else the saved file).
pub fn client() -> Result<Client, Failure> {
    Client::new(&config::current()?)
}

/// The first line of standard input, trimmed (a token, a raw API key).
pub fn stdin_secret(what: &str) -> Result<String, Failure> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| Failure::Local(format!("reading {what} from standard input: {e}")))?;
    let line = s.lines().next().unwrap_or("").trim().to_string();
    if line.is_empty() {
        return Err(Failure::Usage(format!("{what}: standard input was empty")));
    }
    Ok(line)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn run(cli: Cli) -> Result<u8, Failure> {
    let ctx = Ctx {
        json: cli.json,
        now_ms: now_ms(),
    };
    match cli.cmd {
        Cmd::Login(a) => login::login(&a),
        Cmd::Logout => login::logout(),
        Cmd::Completions { shell } => login::completions(shell),
        Cmd::Incident(c) => incident::run(&ctx, c),
        Cmd::Block(a) => act::block_or_allow(&ctx, "block", &a),
        Cmd::Allow(a) => act::block_or_allow(&ctx, "allow", &a),
        Cmd::Isolate(a) => act::isolate(&ctx, &a),
        Cmd::Lift { action, reason } => act::lift(&ctx, action, &reason),
        Cmd::Lookup(a) => act::lookup(&ctx, &a),
        Cmd::Notify(a) => incident::notify(&ctx, &a),
        Cmd::Export {
            incident,
            output,
            markdown,
        } => incident::export(incident, output.as_deref(), markdown),
        Cmd::Now { within } => status::now(&ctx, &within),
        Cmd::Edges => status::edges(&ctx),
        Cmd::Deadlines { incident, status } => status::deadlines(&ctx, incident, status),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("error: {f}");
            if let Failure::Api(a) = &f {
                if let Some(d) = &a.detail {
                    eprintln!("{d}");
                }
            }
            ExitCode::from(f.exit_code())
        }
    }
}
