//! The obvious alternatives to the gateway: nginx (`grpc_pass`) and haproxy (HTTP/2 on both
//! sides), installed from Debian's packages when missing, configured on loopback in a temp
//! dir and run in the foreground as the current user with their own pid and log files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::procs::{Guard, free_port, wait_tcp};

/// A proxy that is available, or why it is not.
#[derive(Debug, Clone)]
pub struct Proxy {
    /// Its binary, or the reason it is skipped.
    pub binary: Result<PathBuf, String>,
    /// `nginx version: nginx/1.22.1`, …
    pub version: String,
}

/// nginx and haproxy.
#[derive(Debug, Clone)]
pub struct Proxies {
    /// nginx.
    pub nginx: Proxy,
    /// haproxy.
    pub haproxy: Proxy,
}

fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Runs a command with a time limit; true if it exited 0.
fn run_bounded(cmd: &mut Command, limit: Duration) -> bool {
    let Ok(mut child) = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn() else {
        return false;
    };
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

fn apt_install(packages: &[&str]) -> Result<(), String> {
    let install = || {
        let mut cmd = Command::new("apt-get");
        cmd.env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(packages);
        run_bounded(&mut cmd, Duration::from_secs(300))
    };
    if install() {
        return Ok(());
    }
    eprintln!("bench: apt-get install failed; running apt-get update and trying again");
    let mut update = Command::new("apt-get");
    update.env("DEBIAN_FRONTEND", "noninteractive").args(["update", "-q"]);
    if run_bounded(&mut update, Duration::from_secs(300)) && install() {
        return Ok(());
    }
    Err(format!("apt-get install {} failed", packages.join(" ")))
}

fn version_of(binary: &Path, arg: &str) -> String {
    Command::new(binary)
        .arg(arg)
        .output()
        .map(|o| {
            let text = if o.stderr.is_empty() { o.stdout } else { o.stderr };
            String::from_utf8_lossy(&text).lines().next().unwrap_or("").trim().to_owned()
        })
        .unwrap_or_default()
}

impl Proxies {
    /// Finds nginx and haproxy; with `install`, installs the missing ones with apt-get
    /// (non-interactive). A proxy that cannot be had is reported as skipped, with why.
    pub fn detect(install: bool) -> Proxies {
        let missing: Vec<&str> = ["nginx", "haproxy"].into_iter().filter(|n| find(n).is_none()).collect();
        let mut install_error = None;
        if !missing.is_empty() {
            if install {
                eprintln!("bench: installing {} from Debian's packages (apt-get)", missing.join(" "));
                if let Err(e) = apt_install(&missing) {
                    install_error = Some(e);
                }
            } else {
                install_error = Some("not installed and --no-install given".to_owned());
            }
        }
        let proxy = |name: &str, version_arg: &str| {
            let binary = find(name).ok_or_else(|| {
                format!("{name} unavailable: {}", install_error.clone().unwrap_or_else(|| "not found".into()))
            });
            let version = binary.as_ref().map(|b| version_of(b, version_arg)).unwrap_or_default();
            Proxy { binary, version }
        };
        Proxies { nginx: proxy("nginx", "-v"), haproxy: proxy("haproxy", "-v") }
    }
}

fn nginx_version(text: &str) -> (u32, u32, u32) {
    let v = text.rsplit('/').next().unwrap_or("").split_whitespace().next().unwrap_or("");
    let mut parts = v.split('.').map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// nginx's configuration: HTTP/2 (h2c) on `listen`, `grpc_pass` to `upstream` with upstream
/// keep-alive, and high `keepalive_requests` on both sides so it does not churn connections
/// (its default, 1000 requests per connection, sends GOAWAY mid-run).
pub fn nginx_config(dir: &Path, listen: SocketAddr, upstream: SocketAddr, version: &str) -> String {
    let new_http2 = nginx_version(version) >= (1, 25, 1);
    let (listen_http2, http2_on) = if new_http2 { ("", "        http2 on;\n") } else { (" http2", "") };
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let d = dir.display();
    format!(
        "# generated by exhook-benches compare\n{user}worker_processes auto;\ndaemon off;\nmaster_process on;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log warn;\n\
events {{\n    worker_connections 4096;\n}}\n\
http {{\n    access_log off;\n    client_body_temp_path {d}/client_body;\n    proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n\
    upstream provider {{\n        server {upstream};\n        keepalive 512;\n        keepalive_requests 100000000;\n        keepalive_timeout 600s;\n    }}\n\
    server {{\n        listen {listen}{listen_http2};\n{http2_on}        keepalive_requests 100000000;\n        keepalive_timeout 600s;\n        http2_max_concurrent_streams 1024;\n\
        location / {{\n            grpc_pass grpc://provider;\n            grpc_read_timeout 600s;\n            grpc_send_timeout 600s;\n        }}\n    }}\n}}\n",
        user = if root { "user root;\n" } else { "" },
    )
}

/// haproxy's configuration: `proto h2` on the frontend and the server line, connection reuse.
pub fn haproxy_config(dir: &Path, listen: SocketAddr, upstream: SocketAddr) -> String {
    let d = dir.display();
    // haproxy refuses to start if it cannot get about 2 descriptors per connection.
    let maxconn = (open_files_limit().saturating_sub(100) / 2).clamp(256, 4096);
    format!(
        "# generated by exhook-benches compare\nglobal\n    maxconn {maxconn}\n    pidfile {d}/haproxy.pid\n\n\
defaults\n    mode http\n    timeout connect 5s\n    timeout client 600s\n    timeout server 600s\n    timeout http-keep-alive 600s\n\n\
frontend grpc_in\n    bind {listen} proto h2\n    default_backend grpc_out\n\n\
backend grpc_out\n    http-reuse always\n    server provider {upstream} proto h2\n"
    )
}

/// The soft limit of open files of this process (inherited by the proxies).
fn open_files_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if ok { limit.rlim_cur } else { 1024 }
}

/// Starts nginx in front of `upstream`; returns it and its address once it accepts.
pub fn start_nginx(proxy: &Proxy, dir: &Path, upstream: SocketAddr) -> anyhow::Result<(Guard, SocketAddr)> {
    let binary = proxy.binary.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::create_dir_all(dir)?;
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, nginx_config(dir, listen, upstream, &proxy.version)).context("writing nginx.conf")?;
    let mut cmd = Command::new(binary);
    cmd.arg("-p").arg(dir).arg("-c").arg(&conf);
    if nginx_version(&proxy.version) >= (1, 19, 5) {
        cmd.arg("-e").arg(dir.join("nginx-error.log"));
    }
    let mut guard = Guard::spawn("nginx", &mut cmd, &dir.join("nginx.out.log"), false)?;
    wait_tcp(listen, 250, &mut guard)?;
    Ok((guard, listen))
}

/// Starts haproxy in front of `upstream`; returns it and its address once it accepts.
pub fn start_haproxy(proxy: &Proxy, dir: &Path, upstream: SocketAddr) -> anyhow::Result<(Guard, SocketAddr)> {
    let binary = proxy.binary.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::create_dir_all(dir)?;
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let conf = dir.join("haproxy.cfg");
    std::fs::write(&conf, haproxy_config(dir, listen, upstream)).context("writing haproxy.cfg")?;
    let mut cmd = Command::new(binary);
    cmd.arg("-db").arg("-f").arg(&conf);
    let mut guard = Guard::spawn("haproxy", &mut cmd, &dir.join("haproxy.log"), false)?;
    wait_tcp(listen, 250, &mut guard)?;
    Ok((guard, listen))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_mention_what_matters() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let old = nginx_config(Path::new("/tmp/x"), a, b, "nginx version: nginx/1.22.1");
        assert!(old.contains("listen 127.0.0.1:1 http2;") && old.contains("grpc_pass grpc://provider;"));
        assert!(old.contains("keepalive 512;") && old.contains("keepalive_requests 100000000;"));
        let new = nginx_config(Path::new("/tmp/x"), a, b, "nginx version: nginx/1.26.0");
        assert!(new.contains("http2 on;") && new.contains("listen 127.0.0.1:1;"));
        let h = haproxy_config(Path::new("/tmp/x"), a, b);
        assert!(h.contains("bind 127.0.0.1:1 proto h2") && h.contains("server provider 127.0.0.1:2 proto h2"));
        assert_eq!(nginx_version("nginx version: nginx/1.22.1"), (1, 22, 1));
    }
}
