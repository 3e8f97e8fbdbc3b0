//! [`TetherProcess`]: the built `tether` binary run the way an operator runs it, for the tests
//! that must see the product from outside the process (start-up errors, several instances on
//! one database, a SIGKILL mid-refresh, what reaches the logs). Each such test used to spawn,
//! wait for and stop the process in its own way; this is the one way:
//!
//! - [`tether_command`] gives a clean environment (nothing of the developer's `TETHER_*` leaks
//!   in), a free loopback port and quiet logs; the test adds its settings and arguments.
//! - [`TetherProcess::start`] spawns it, captures everything it writes (stdout and stderr,
//!   each kept apart, so it can never block on a full pipe and a test can search either), and
//!   waits, bounded, for the line saying where it listens; a process that exits first fails
//!   the test with its output.
//! - It is stopped by its pid: SIGKILL with [`TetherProcess::kill`], any other signal with
//!   [`TetherProcess::signal`], and SIGKILL on drop (`kill_on_drop`), panics included.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use url::Url;

/// What `tether serve` prints once it accepts connections.
const LISTENING: &str = "Tether is listening on ";
/// What `tether serve` prints on first run, with the API key it made.
const PRINTED_KEY: &str = "TETHER_API_KEY=";

/// `bin` (the test's `env!("CARGO_BIN_EXE_tether")`) in `dir` with a clean environment: only
/// `PATH`, a free loopback port (`TETHER_SERVER__LISTEN=127.0.0.1:0`) and `RUST_LOG=warn`;
/// no stdin; killed if dropped. Add settings with `.env`, then the subcommand with `.arg`.
pub fn tether_command(bin: &str, dir: &Path) -> Command {
    let mut command = Command::new(bin);
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TETHER_SERVER__LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// A running `tether serve` (or any `tether` command that listens), its output captured.
pub struct TetherProcess {
    child: Child,
    pid: u32,
    base: Url,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    exited: bool,
}

impl TetherProcess {
    /// Spawns `command` (with its subcommand, e.g. `serve`, already added) and waits at most
    /// `limit` for it to say where it listens. Its stdout and stderr are captured whatever
    /// the command said about them. Panics, showing what it wrote, when it exits or stays
    /// silent instead.
    pub async fn start(mut command: Command, limit: Duration) -> TetherProcess {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("tether starts");
        let pid = child.id().expect("a started process has a pid");
        let (stdout, stderr) = (Arc::default(), Arc::default());
        let (listening, heard) = oneshot::channel();
        let readers = vec![
            capture(
                child.stdout.take().expect("stdout is piped"),
                Arc::clone(&stdout),
                Some(listening),
            ),
            capture(
                child.stderr.take().expect("stderr is piped"),
                Arc::clone(&stderr),
                None,
            ),
        ];
        let output = || both(&stdout, &stderr);
        let base = match tokio::time::timeout(limit, heard).await {
            Ok(Ok(url)) => Url::parse(&url).expect("tether prints a URL"),
            Ok(Err(_)) => {
                // Its stdout ended: let stderr end too, so the message shows all it said.
                for reader in readers {
                    let _ = tokio::time::timeout(limit, reader).await;
                }
                panic!("tether exited before listening:\n{}", output())
            }
            Err(_) => panic!("tether did not listen within {limit:?}:\n{}", output()),
        };
        TetherProcess {
            child,
            pid,
            base,
            stdout,
            stderr,
            readers,
            exited: false,
        }
    }

    /// The base URL it printed, e.g. `http://127.0.0.1:PORT/`.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `path` joined onto [`TetherProcess::base`].
    pub fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("a path joins onto the base")
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The API key it printed on first run (`TETHER_API_KEY=...`), if it printed one.
    pub fn printed_key(&self) -> Option<String> {
        let stdout = self.stdout.lock().unwrap();
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(PRINTED_KEY))
            .map(str::to_owned)
    }

    /// What it has written to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// What it has written to stderr (its logs) so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Everything it has written so far: stdout, then stderr.
    pub fn output(&self) -> String {
        both(&self.stdout, &self.stderr)
    }

    /// Sends signal `name` (`TERM`, `HUP`, ...) to its pid with `kill(1)`.
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid.to_string())
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -{name} {} failed", self.pid);
    }

    /// Waits at most `limit` for it to exit (after a signal), then for its output to end;
    /// returns how it exited.
    pub async fn wait(&mut self, limit: Duration) -> ExitStatus {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("tether exits within {limit:?}:\n{}", self.output()))
            .expect("waiting for tether");
        self.exited = true;
        for reader in self.readers.drain(..) {
            // The pipes close with the process; a reader that still runs has a grandchild
            // holding them, which tether never makes.
            let _ = tokio::time::timeout(limit, reader).await;
        }
        status
    }

    /// SIGKILL by pid, then reap; once (a second call does nothing).
    pub async fn kill(&mut self) {
        if self.exited {
            return;
        }
        self.child.start_kill().expect("SIGKILL is sent");
        self.wait(Duration::from_secs(10)).await;
    }
}

fn both(stdout: &Mutex<String>, stderr: &Mutex<String>) -> String {
    let (stdout, stderr) = (stdout.lock().unwrap(), stderr.lock().unwrap());
    format!("{stdout}{stderr}")
}

/// Appends every line of `stream` to `output` until it ends; the first line saying where it
/// listens goes to `listening` too.
fn capture(
    stream: impl AsyncRead + Unpin + Send + 'static,
    output: Arc<Mutex<String>>,
    mut listening: Option<oneshot::Sender<String>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            {
                let mut output = output.lock().unwrap();
                output.push_str(&line);
                output.push('\n');
            }
            if let Some(url) = line.strip_prefix(LISTENING)
                && let Some(tx) = listening.take()
            {
                let _ = tx.send(url.to_owned());
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for `tether serve`: a shell that prints what tether prints, then waits.
    fn fake_tether(dir: &Path, script: &str) -> Command {
        let mut command = tether_command("sh", dir);
        command.arg("-c").arg(script);
        command
    }

    #[tokio::test]
    async fn waits_for_the_listening_line_and_captures_both_streams() {
        let dir = std::env::temp_dir();
        let mut process = TetherProcess::start(
            fake_tether(
                &dir,
                "echo TETHER_API_KEY=k-123; echo warn-line >&2; \
                 echo 'Tether is listening on http://127.0.0.1:9/'; exec sleep 60",
            ),
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(process.base().as_str(), "http://127.0.0.1:9/");
        assert_eq!(process.url("v1/x").as_str(), "http://127.0.0.1:9/v1/x");
        assert_eq!(process.printed_key().as_deref(), Some("k-123"));
        crate::eventually(Duration::from_secs(10), "stderr captured", || async {
            process.stderr() == "warn-line\n"
        })
        .await;
        assert!(!process.stdout().contains("warn-line"));
        assert!(process.output().contains("warn-line"));
        process.signal("TERM");
        let status = process.wait(Duration::from_secs(10)).await;
        assert!(!status.success(), "ended by SIGTERM");
        process.kill().await; // already exited: nothing to do
    }

    #[tokio::test]
    #[should_panic(expected = "tether exited before listening:\nboom")]
    async fn a_process_that_exits_first_fails_with_its_output() {
        TetherProcess::start(
            fake_tether(&std::env::temp_dir(), "echo boom >&2; exit 3"),
            Duration::from_secs(30),
        )
        .await;
    }

    #[tokio::test]
    async fn kill_stops_it_by_pid() {
        let mut process = TetherProcess::start(
            fake_tether(
                &std::env::temp_dir(),
                "echo 'Tether is listening on http://127.0.0.1:9/'; exec sleep 60",
            ),
            Duration::from_secs(30),
        )
        .await;
        let pid = process.pid();
        process.kill().await;
        let alive = std::process::Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(!alive.success(), "pid {pid} is gone");
    }
}
