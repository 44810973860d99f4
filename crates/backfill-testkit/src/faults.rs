//! Tools for the fault-injection suite: a TCP proxy that can cut the
//! network, and private Postgres and dynalite servers that a test may
//! restart without disturbing the tests that share the stack's servers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// A TCP proxy in front of one server. [`TcpCut::cut`] drops every open
/// connection and refuses new ones for a while: what a client sees when the
/// network to the server fails.
pub struct TcpCut {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    /// Bumped by each cut; connections of an older generation close.
    generation: watch::Sender<u64>,
    cuts: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpCut {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let gen_tx = generation.clone();
        let is_cut = cut.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if is_cut.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut gen_rx = gen_tx.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let mut client = client;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = gen_rx.changed() => {}
                    }
                });
            }
        });
        Ok(TcpCut {
            addr,
            cut,
            generation,
            cuts: Arc::new(AtomicU64::new(0)),
            task,
        })
    }

    /// Cuts the network for `outage`: open connections drop at once, new
    /// ones are closed on accept; then connections go through again.
    pub async fn cut(&self, outage: Duration) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
        self.cuts.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(outage).await;
        self.cut.store(false, Ordering::SeqCst);
    }

    /// How many cuts there were.
    pub fn cuts(&self) -> u64 {
        self.cuts.load(Ordering::Relaxed)
    }
}

impl Drop for TcpCut {
    fn drop(&mut self) {
        self.task.abort();
        self.generation.send_modify(|g| *g += 1);
    }
}

/// A free port on 127.0.0.1 (bound and released: another process could take
/// it in between, which is unlikely enough for tests).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_for_port(port: u16, what: &str) -> Result<()> {
    for _ in 0..300 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{what} did not listen on 127.0.0.1:{port} within 30 s")
}

/// The directory of Postgres' server binaries (Debian's layout).
fn pg_bin() -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no /usr/lib/postgresql: the Postgres server binaries are not installed")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    found.sort();
    found
        .pop()
        .context("no pg_ctl under /usr/lib/postgresql/*/bin")
}

/// Runs a Postgres server binary as the `postgres` user when we are root
/// (initdb and postgres refuse to run as root). Synchronous, so `Drop` can
/// use it too; `.into()` makes the tokio command.
fn pg_command(bin: &std::path::Path, args: &[&str]) -> std::process::Command {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let mut c = if root {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        std::process::Command::new(bin)
    };
    c.args(args).stdin(Stdio::null());
    c
}

/// A Postgres server of its own, in a temporary directory on a free port,
/// that a test may restart. Stopped (and its directory removed) on drop.
pub struct PrivatePostgres {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    restarts: AtomicU64,
}

impl PrivatePostgres {
    pub async fn start() -> Result<Self> {
        let bin = pg_bin()?;
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("backfill-pg-{}", crate::unique("f")));
        std::fs::create_dir_all(&dir)?;
        // The server runs as `postgres`, which must own its directory.
        let _ = std::process::Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status();
        let data = dir.join("data");
        let out = Command::from(pg_command(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().context("temp dir is not UTF-8")?,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        ))
        .output()
        .await
        .context("running initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let pg = PrivatePostgres {
            port,
            dir,
            bin,
            restarts: AtomicU64::new(0),
        };
        pg.ctl(&["start", "-w", "-t", "30"]).await?;
        Ok(pg)
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres:postgres@127.0.0.1:{}/postgres",
            self.port
        )
    }

    async fn ctl(&self, action: &[&str]) -> Result<()> {
        let data = self.dir.join("data");
        let log = self.dir.join("server.log");
        let port_opt = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            self.port,
            self.dir.display()
        );
        let mut args = vec!["-D", data.to_str().unwrap_or_default()];
        args.extend_from_slice(action);
        args.extend_from_slice(&["-l", log.to_str().unwrap_or_default(), "-o", &port_opt]);
        let out = Command::from(pg_command(&self.bin.join("pg_ctl"), &args))
            .output()
            .await
            .context("running pg_ctl")?;
        if !out.status.success() {
            bail!(
                "pg_ctl {action:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// A fast restart: every session is terminated, the server is down for
    /// `down`, then back.
    pub async fn restart(&self, down: Duration) -> Result<()> {
        self.ctl(&["stop", "-w", "-m", "fast"]).await?;
        tokio::time::sleep(down).await;
        self.ctl(&["start", "-w", "-t", "30"]).await?;
        self.restarts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = pg_command(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                data.to_str().unwrap_or_default(),
                "stop",
                "-m",
                "immediate",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A dynalite of its own that keeps its data on disk (`--path`), so a test
/// may kill and restart it with the data kept. Killed on drop.
pub struct PrivateDynalite {
    pub port: u16,
    dir: PathBuf,
    child: Mutex<Option<Child>>,
    restarts: AtomicU64,
}

impl PrivateDynalite {
    pub async fn start() -> Result<Self> {
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("backfill-ddb-{}", crate::unique("f")));
        std::fs::create_dir_all(&dir)?;
        let d = PrivateDynalite {
            port,
            dir,
            child: Mutex::new(None),
            restarts: AtomicU64::new(0),
        };
        d.spawn().await?;
        Ok(d)
    }

    /// The dynalite that scripts/stack-up.sh installed (.local/dynalite).
    fn binary() -> Result<PathBuf> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let bin = root.join(".local/dynalite/node_modules/.bin/dynalite");
        if !bin.exists() {
            bail!(
                "no dynalite at {} (scripts/stack-up.sh installs it)",
                bin.display()
            );
        }
        Ok(bin)
    }

    async fn spawn(&self) -> Result<()> {
        let child = Command::new(Self::binary()?)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--path")
            .arg(&self.dir)
            .args([
                "--createTableMs=0",
                "--deleteTableMs=0",
                "--updateTableMs=0",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting dynalite")?;
        *self.child.lock().expect("dynalite lock") = Some(child);
        wait_for_port(self.port, "dynalite").await
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills dynalite (SIGKILL: no chance to flush anything more), leaves it
    /// down for `down`, and starts it again on the same data.
    pub async fn restart(&self, down: Duration) -> Result<()> {
        let old = self.child.lock().expect("dynalite lock").take();
        if let Some(mut c) = old {
            c.kill().await.context("killing dynalite")?;
        }
        tokio::time::sleep(down).await;
        self.spawn().await?;
        self.restarts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }
}

impl Drop for PrivateDynalite {
    fn drop(&mut self) {
        if let Ok(mut c) = self.child.lock() {
            if let Some(c) = c.as_mut() {
                let _ = c.start_kill();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
