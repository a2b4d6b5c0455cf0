//! `login`, `logout`, `completions`: the commands that need no saved credentials.

use std::io::{BufRead, IsTerminal, Write};
use std::process::{Command, Stdio};

use clap::CommandFactory;

use crate::args::{Cli, LoginArgs, Shell};
use crate::client::{check_url, Client, Failure};
use crate::config::{self, Credentials, Saved};

/// Ask for the token on the terminal without echoing it (`stty -echo`; when that is not
/// possible the input is read as typed).
fn prompt_token() -> Result<String, Failure> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return crate::stdin_secret("the token");
    }
    eprint!("token (input hidden): ");
    let _ = std::io::stderr().flush();
    let stty = |arg: &str| {
        Command::new("stty")
            .arg(arg)
            .stdin(Stdio::inherit())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let hidden = stty("-echo");
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if hidden {
        stty("echo");
        eprintln!();
    }
    read.map_err(|e| Failure::Local(format!("reading the token: {e}")))?;
    let t = line.trim().to_string();
    if t.is_empty() {
        return Err(Failure::Usage("no token given".into()));
    }
    Ok(t)
}

pub fn login(a: &LoginArgs) -> Result<u8, Failure> {
    let url = check_url(&a.url)?;
    let token = if a.token_stdin {
        crate::stdin_secret("the token")?
    } else {
        prompt_token()?
    };
    let creds = Credentials {
        url: url.clone(),
        token: token.clone(),
        url_from: "--url".into(),
        token_from: "the login".into(),
    };
    // Check the token before keeping it: a refused token is not saved.
    match Client::new(&creds)?.get("/v1/incidents?limit=1") {
        Ok(_) => {}
        Err(Failure::Api(e)) if e.status == 403 => eprintln!(
            "warning: this token may not read incidents ({}): most commands will be refused",
            e.message
        ),
        Err(e) => return Err(e),
    }
    let p = config::path()?;
    config::save(
        &p,
        &Saved {
            url: url.clone(),
            token,
        },
    )?;
    println!("logged in to {url}; saved to {} (mode 0600)", p.display());
    for var in ["EC_URL", "EC_TOKEN"] {
        if std::env::var(var).is_ok_and(|v| !v.trim().is_empty()) {
            eprintln!("note: {var} is set and overrides the saved file");
        }
    }
    Ok(0)
}

pub fn logout() -> Result<u8, Failure> {
    let p = config::path()?;
    match std::fs::remove_file(&p) {
        Ok(()) => println!("removed {}", p.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("not logged in ({} does not exist)", p.display())
        }
        Err(e) => return Err(Failure::Local(format!("{}: {e}", p.display()))),
    }
    Ok(0)
}

pub fn completions(shell: Shell) -> Result<u8, Failure> {
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "contain",
        &mut std::io::stdout(),
    );
    Ok(0)
}
