//! Child processes that are killed when dropped, with their output captured.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// How long a started process may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running child process: stdout and stderr are captured line by line (echoed to stderr
/// with a `[name]` tag when `E2E_ECHO` is set). Killed and reaped on drop.
pub struct Proc {
    pub name: String,
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Starts `cmd`, then waits until a line of its output contains `ready_marker`; returns
    /// the process and the rest of that line after the marker, trimmed (e.g. the bound
    /// address). Fails with the output so far when the process exits or stays silent.
    pub fn spawn(
        name: &str,
        mut cmd: Command,
        ready_marker: &str,
    ) -> anyhow::Result<(Proc, String)> {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let output = Arc::new(Mutex::new(Vec::new()));
        let streams = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ];
        for stream in streams.into_iter().flatten() {
            let out = output.clone();
            let tag = name.to_string();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if std::env::var_os("E2E_ECHO").is_some() {
                        eprintln!("[{tag}] {line}");
                    }
                    out.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                }
            });
        }
        let mut p = Proc {
            name: name.into(),
            child,
            output,
        };
        match p.wait_for_line(ready_marker, READY_TIMEOUT) {
            Some(rest) => Ok((p, rest)),
            None => bail!(
                "{name} never printed {ready_marker:?}; output:\n{}",
                p.output_text()
            ),
        }
    }

    /// [`Proc::spawn`] for tests: panics with the output when the process does not start.
    #[track_caller]
    pub fn start(name: &str, cmd: Command, ready_marker: &str) -> (Proc, String) {
        Proc::spawn(name, cmd, ready_marker).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Waits for an output line containing `needle`; returns what follows it on the line.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(rest) = self.find_line(needle) {
                return Some(rest);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Give the reader threads a moment to drain.
                std::thread::sleep(Duration::from_millis(100));
                if let Some(rest) = self.find_line(needle) {
                    return Some(rest);
                }
                eprintln!("{} exited with {status}", self.name);
                return None;
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn lines(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.output.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn find_line(&self, needle: &str) -> Option<String> {
        self.lines()
            .iter()
            .find_map(|l| l.split_once(needle).map(|(_, r)| r.trim().to_string()))
    }

    /// How many output lines contain `needle`.
    pub fn count_lines(&self, needle: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(needle)).count()
    }

    /// Everything captured so far, one line per output line.
    pub fn output_text(&self) -> String {
        self.lines().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (a name `kill` knows: `INT`, `TERM`), then waits up to `timeout` for
    /// the process to exit. Returns whether it exited with status 0.
    pub fn stop(&mut self, signal: &str, timeout: Duration) -> bool {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn returns_the_rest_of_the_ready_line_and_captures_both_streams() {
        let (p, rest) = Proc::spawn(
            "sh",
            sh("echo err-line >&2; echo 'up: listening on  http://x:1 '; sleep 30"),
            "listening on",
        )
        .unwrap();
        assert_eq!(rest, "http://x:1");
        let mut p = p;
        assert!(p
            .wait_for_line("err-line", Duration::from_secs(10))
            .is_some());
        assert_eq!(p.count_lines("listening"), 1);
        assert!(p.output_text().contains("err-line"));
    }

    #[test]
    fn a_process_that_exits_without_the_marker_is_an_error_with_its_output() {
        let e = Proc::spawn("sh", sh("echo nothing-useful"), "ready")
            .err()
            .unwrap();
        let msg = format!("{e:#}");
        assert!(msg.contains("never printed \"ready\""), "{msg}");
        assert!(msg.contains("nothing-useful"), "{msg}");
    }

    #[test]
    fn stop_reports_a_clean_exit_and_drop_kills() {
        let (mut p, _) = Proc::spawn(
            "sh",
            sh("trap 'exit 0' TERM; echo ready; while :; do sleep 0.05; done"),
            "ready",
        )
        .unwrap();
        assert!(p.stop("TERM", Duration::from_secs(10)));
        let (p, _) = Proc::spawn("sh", sh("echo ready; exec sleep 30"), "ready").unwrap();
        let pid = p.pid();
        drop(p);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
