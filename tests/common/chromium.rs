//! A real browser: headless Chromium loading the admin page, its DOM and screenshots, and the
//! directory where screenshots are left for people to look at.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::golden::repo_root;
use super::tools::{on_path, tool_available};

/// Where tests leave files for people to look at (`tests/artifacts/`, gitignored).
pub fn artifacts_dir() -> PathBuf {
    let dir = repo_root().join("tests/artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Headless Chromium (Debian's `chromium`), each run with a fresh profile.
pub struct Chromium {
    pub bin: PathBuf,
}

impl Chromium {
    /// Finds Chromium on PATH (`chromium`, or `chromium-browser`). Without it, the policy of
    /// `tool_available`: a failure under CI (`.ci/run` installs it), a note and `None` elsewhere.
    pub fn find() -> Option<Chromium> {
        let found = ["chromium", "chromium-browser"]
            .into_iter()
            .find(|name| on_path(name))
            .map(PathBuf::from);
        let installer = ".ci/run (apt-get install chromium)";
        if !tool_available("chromium", found.is_some(), installer) {
            return None;
        }
        found.map(|bin| Chromium { bin })
    }

    /// Runs Chromium headless with `args` (after the usual flags) and returns what it printed.
    pub fn run_with(&self, args: &[String]) -> String {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(&self.bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts");
        let mut out = String::new();
        let mut stdout = child.stdout.take().unwrap();
        let reader = thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        let deadline = Instant::now() + Duration::from_secs(90);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium {args:?} did not finish in 90 s");
            }
            thread::sleep(Duration::from_millis(20));
        };
        out.push_str(&reader.join().unwrap());
        assert!(status.success(), "chromium {args:?} failed: {status}");
        out
    }

    /// The DOM of `url` once it has loaded and its scripts ran.
    pub fn dump_dom(&self, url: &str) -> String {
        self.run_with(&["--dump-dom".into(), url.into()])
    }

    /// A 1366x900 screenshot of `url` (a laptop screen), written to `png`.
    pub fn screenshot(&self, url: &str, png: &Path) {
        let _ = std::fs::remove_file(png);
        self.run_with(&[
            format!("--screenshot={}", png.display()),
            "--window-size=1366,900".into(),
            url.into(),
        ]);
        assert!(png.exists(), "no screenshot at {}", png.display());
    }
}
