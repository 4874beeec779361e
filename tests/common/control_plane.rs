//! canary-xds as a child process: `serve` with its log captured (killed, restarted, stopped
//! with SIGTERM, or run under a lowered open-file limit), and the binary's command with none of
//! the developer's settings.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::http::free_port;
use super::wait::wait_for;

/// The canary-xds binary, with none of the `CANARY_XDS*` variables of the environment the tests
/// run in, so that a developer's settings never change a result.
pub fn canary_xds() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_canary-xds"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CANARY_XDS") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Sends SIGTERM to `child` and waits (20 s at most) for it to exit.
pub fn sigterm(child: &mut Child) -> ExitStatus {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    wait_for("canary-xds to exit", Duration::from_secs(20), || {
        child.try_wait().unwrap()
    })
}

/// canary-xds `serve` as a child process, its log captured.
pub struct ControlPlane {
    pub child: Child,
    pub xds_port: u16,
    /// The admin server's port (`--admin`, a free port unless the test gives one; 0 if `off`).
    pub admin_port: u16,
    pub log: PathBuf,
    pub dir: PathBuf,
    extra: Vec<String>,
    /// The open-file limit (soft and hard) it runs under, if lowered.
    open_files: Option<u64>,
}

impl ControlPlane {
    /// Starts `serve --dir dir` with `extra` flags, and waits until the xDS port accepts.
    pub fn start(dir: &Path, listen_port: u16, extra: &[&str]) -> ControlPlane {
        Self::start_limited(dir, listen_port, extra, None)
    }

    /// `start` with the open-file limit (soft and hard: `serve` raises the soft one to the
    /// hard one) lowered to `open_files`.
    pub fn start_with_open_files(
        dir: &Path,
        listen_port: u16,
        extra: &[&str],
        open_files: u64,
    ) -> ControlPlane {
        Self::start_limited(dir, listen_port, extra, Some(open_files))
    }

    fn start_limited(
        dir: &Path,
        listen_port: u16,
        extra: &[&str],
        open_files: Option<u64>,
    ) -> ControlPlane {
        let xds_port = free_port();
        let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if !extra.iter().any(|e| e == "--listen") {
            extra.push("--listen".into());
            extra.push(format!("127.0.0.1:{listen_port}"));
        }
        // Never the default admin address: two control planes (or one a developer runs) would
        // fight over it.
        if !extra.iter().any(|e| e == "--admin") {
            extra.push("--admin".into());
            extra.push(format!("127.0.0.1:{}", free_port()));
        }
        let admin_port = extra
            .iter()
            .position(|e| e == "--admin")
            .and_then(|i| extra.get(i + 1))
            .and_then(|a| a.rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(0);
        let log = dir.with_extension(format!("cp-{xds_port}.log"));
        let child = spawn_control_plane(dir, xds_port, &extra, &log, open_files);
        let cp = ControlPlane {
            child,
            xds_port,
            admin_port,
            log,
            dir: dir.to_path_buf(),
            extra,
            open_files,
        };
        cp.wait_ready();
        cp
    }

    fn wait_ready(&self) {
        wait_for("canary-xds to listen", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", self.xds_port)).ok()
        });
    }

    /// SIGKILLs the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same ports and flags.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn_control_plane(
            &self.dir,
            self.xds_port,
            &self.extra,
            &self.log,
            self.open_files,
        );
        self.wait_ready();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, and its exit status (`sigterm`).
    pub fn sigterm(&mut self) -> ExitStatus {
        sigterm(&mut self.child)
    }
}

fn spawn_control_plane(
    dir: &Path,
    xds_port: u16,
    extra: &[String],
    log: &Path,
    open_files: Option<u64>,
) -> Child {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let bin = env!("CARGO_BIN_EXE_canary-xds");
    // The shell lowers the limit and `exec`s: the child's pid is canary-xds's own.
    let mut cmd = match open_files {
        None => Command::new(bin),
        Some(n) => {
            let mut sh = Command::new("sh");
            sh.arg("-c")
                .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                .arg(bin);
            sh
        }
    };
    cmd.arg("serve")
        .arg("--dir")
        .arg(dir)
        .arg("--xds")
        .arg(format!("127.0.0.1:{xds_port}"))
        .args(extra)
        .env("RUST_LOG", "canary_xds=debug")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("canary-xds starts")
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.kill();
    }
}
