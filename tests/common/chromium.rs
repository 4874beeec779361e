//! A real browser: headless Chromium loading the admin page, its DOM and screenshots, and the
//! directory where screenshots are left for people to look at.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Where tests leave files for people to look at (gitignored).
pub fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Headless Chromium (Debian's `chromium`), each run with a fresh profile.
pub struct Chromium {
    pub bin: PathBuf,
}

impl Chromium {
    /// Finds Chromium on PATH. Without it, a test fails under CI (`CI` set: `.ci/run` installs
    /// it) and is skipped with a note elsewhere.
    pub fn find() -> Option<Chromium> {
        let found = ["chromium", "chromium-browser"].iter().find_map(|name| {
            Command::new(name)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .ok()
                .filter(|s| s.success())
                .map(|_| PathBuf::from(name))
        });
        match found {
            Some(bin) => Some(Chromium { bin }),
            None if std::env::var_os("CI").is_some() => {
                panic!("chromium is not on PATH: .ci/run installs it (apt-get install chromium)")
            }
            None => {
                eprintln!(
                    "note: chromium is not on PATH; skipping the browser check (apt-get install \
                     chromium to run it)"
                );
                None
            }
        }
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
