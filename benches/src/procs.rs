//! Child processes of the runner: started with their own log files, killed on drop (also on
//! errors and panics), never outliving the runner (`PR_SET_PDEATHSIG`), readiness by polling.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// A running child process; on drop it gets SIGTERM, then SIGKILL if it has not exited
/// within 3 s, and is reaped.
#[derive(Debug)]
pub struct Guard {
    name: String,
    child: Child,
    log: PathBuf,
}

/// Asks the kernel to send SIGTERM to the child when the runner's thread dies, so no
/// process outlives a killed runner.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only calls prctl, which is
    // async-signal-safe; it touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

impl Guard {
    /// Starts `cmd` with stderr (and stdout, unless already set to piped) appended to `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path, stdout_piped: bool) -> anyhow::Result<Guard> {
        let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        cmd.stderr(file.try_clone()?);
        if stdout_piped {
            cmd.stdout(Stdio::piped());
        } else {
            cmd.stdout(file);
        }
        die_with_parent(cmd);
        let child = cmd.spawn().with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        Ok(Guard { name: name.to_owned(), child, log: log.to_owned() })
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child, for its pipes.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// An error (with the end of its log) if it has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status}); last log lines:\n{}", self.name, log_tail(&self.log, 15));
        }
        Ok(())
    }

    /// Waits for it to exit by itself within `limit`, else kills it and fails.
    pub fn wait_exit(&mut self, limit: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("{} did not finish within {limit:?}; killed", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `n` lines of a log file.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A loopback port free right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Polls a TCP connect to `addr` (at most `attempts` times, 20 ms apart) while `guard`'s
/// process is alive.
pub fn wait_tcp(addr: SocketAddr, attempts: u32, guard: &mut Guard) -> anyhow::Result<()> {
    for _ in 0..attempts {
        guard.check_alive()?;
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("{} not accepting on {addr} after {attempts} attempts; log:\n{}", guard.name, log_tail(&guard.log, 15))
}

/// The `exhook-bench-provider` process: its providers' addresses and a stats channel.
#[derive(Debug)]
pub struct ProviderProcess {
    /// Closing it makes the process exit (it runs with `--control-stdin`).
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// `(name, address)` per provider, in order.
    pub addrs: Vec<(String, SocketAddr)>,
    /// The process (dropped last).
    pub guard: Guard,
}

impl ProviderProcess {
    /// Starts `bin` with `specs` and waits (bounded) for every provider to listen.
    pub fn start(
        bin: &Path,
        specs: &[String],
        threads: Option<usize>,
        tls: Option<&crate::scenarios::BenchTls>,
        log: &Path,
    ) -> anyhow::Result<ProviderProcess> {
        let mut cmd = Command::new(bin);
        cmd.arg("--control-stdin").stdin(Stdio::piped());
        if let Some(t) = tls {
            cmd.arg("--tls-cert").arg(&t.cert).arg("--tls-key").arg(&t.key);
        }
        if let Some(t) = threads {
            cmd.arg("--threads").arg(t.to_string());
        }
        for s in specs {
            cmd.arg("--provider").arg(s);
        }
        let mut guard = Guard::spawn("exhook-bench-provider", &mut cmd, log, true)?;
        let stdin = guard.child_mut().stdin.take();
        let stdout = guard.child_mut().stdout.take().context("provider stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut addrs = Vec::new();
        loop {
            let line = lines
                .recv_timeout(Duration::from_secs(10))
                .map_err(|_| anyhow::anyhow!("providers not ready in 10 s; log:\n{}", log_tail(log, 15)))?;
            if line == "READY" {
                break;
            }
            if let Some(rest) = line.strip_prefix("LISTENING ") {
                let (name, addr) = rest.split_once(' ').context("bad LISTENING line")?;
                addrs.push((name.to_owned(), addr.parse()?));
            }
        }
        Ok(ProviderProcess { stdin, lines, addrs, guard })
    }

    /// Hook calls each provider has answered so far.
    pub fn stats(&mut self) -> anyhow::Result<Vec<u64>> {
        let stdin = self.stdin.as_mut().context("provider stdin closed")?;
        writeln!(stdin, "stats")?;
        stdin.flush()?;
        let mut out = Vec::new();
        loop {
            let line = self.lines.recv_timeout(Duration::from_secs(5)).context("provider stats timed out")?;
            if line == "END" {
                return Ok(out);
            }
            if let Some(n) = line.rsplit(' ').next().and_then(|n| n.parse().ok()) {
                out.push(n);
            }
        }
    }

    /// Polls [`ProviderProcess::stats`] until the total stops changing (queued notifications
    /// delivered) or `limit` passes, and returns the total.
    pub fn settled_total(&mut self, limit: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + limit;
        let mut last = self.stats()?.iter().sum::<u64>();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.stats()?.iter().sum::<u64>();
            if now == last {
                break;
            }
            last = now;
        }
        Ok(last)
    }
}

impl Drop for ProviderProcess {
    fn drop(&mut self) {
        // Closing stdin asks it to exit; the guard then terminates it if needed.
        self.stdin.take();
    }
}

/// The workspace binaries the runners start, found next to the running one (build them into
/// the same profile directory first).
#[derive(Debug, Clone)]
pub struct Bins {
    /// `exhook-gateway`.
    pub gateway: PathBuf,
    /// `exhook-loadgen`.
    pub loadgen: PathBuf,
    /// `exhook-bench-provider`.
    pub provider: PathBuf,
    /// The profile directory they are in (`target/release`, `target/debug`).
    pub profile_dir: PathBuf,
}

impl Bins {
    /// Finds them beside the current executable; an error naming the build command if one is
    /// missing.
    pub fn locate() -> anyhow::Result<Bins> {
        let exe = std::env::current_exe().context("locating the runner's executable")?;
        let dir = exe.parent().context("executable has no directory")?.to_owned();
        let bins = Bins {
            gateway: dir.join("exhook-gateway"),
            loadgen: dir.join("exhook-loadgen"),
            provider: dir.join("exhook-bench-provider"),
            profile_dir: dir,
        };
        for b in [&bins.gateway, &bins.loadgen, &bins.provider] {
            if !b.is_file() {
                bail!(
                    "{} is missing: build the binaries into the runner's directory first, e.g.\n  cargo build --release -p exhook-gateway -p exhook-loadgen -p exhook-benches",
                    b.display()
                );
            }
        }
        Ok(bins)
    }
}
