//! Child processes that are killed when dropped, with their output captured.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running child process. Killed on drop.
pub struct Proc {
    pub name: String,
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Start `cmd`, then wait until a line of its output contains `ready_marker`; the rest of
    /// that line after the marker is returned (e.g. the bound address).
    pub fn start(name: &str, mut cmd: Command, ready_marker: &str) -> (Proc, String) {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let output = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let out = output.clone();
            let tag = name.to_string();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if std::env::var_os("E2E_ECHO").is_some() {
                        eprintln!("[{tag}] {line}");
                    }
                    out.lock().unwrap().push(line);
                }
            });
        }
        let mut p = Proc {
            name: name.into(),
            child,
            output,
        };
        let rest = p
            .wait_for_line(ready_marker, Duration::from_secs(60))
            .unwrap_or_else(|| {
                panic!(
                    "{name} never printed {ready_marker:?}; output:\n{}",
                    p.output_text()
                )
            });
        (p, rest)
    }

    /// Wait for an output line containing `needle`; returns what follows it on the line.
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

    fn find_line(&self, needle: &str) -> Option<String> {
        let lines = self.output.lock().unwrap();
        lines
            .iter()
            .find_map(|l| l.split_once(needle).map(|(_, r)| r.trim().to_string()))
    }

    /// How many output lines contain `needle`.
    pub fn count_lines(&self, needle: &str) -> usize {
        self.output
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    pub fn output_text(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Wait up to `timeout` for the process to exit on its own. Returns whether it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// SIGINT, then wait up to `timeout` for a clean exit. Returns whether it exited 0.
    pub fn interrupt(&mut self, timeout: Duration) -> bool {
        let _ = Command::new("kill")
            .arg("-INT")
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

/// Write `contents` to a fresh file in a temporary directory that lives as long as the test.
pub fn temp_file(dir: &Path, name: &str, contents: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).expect("write temp file");
    p
}
