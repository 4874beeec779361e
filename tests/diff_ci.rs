//! The CI jobs of docs/diff.md, run as the page writes them, so that the page cannot show a job
//! that does not work.
//!
//! Both jobs (GitHub Actions and GitLab CI) are read from the page's YAML blocks, found by the
//! comment on their first line. A git repository gets a base commit (the docs' example, the
//! canary at 10%) and pull-request branches; each is cloned shallow, as CI clones, and the job's
//! diff step runs in the clone with bash as the runners run it, with `canary-xds` (the built
//! binary) on `PATH` and `gh` and `curl` replaced by stubs that record how they were called.
//! The install step and the posting itself are not run.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{WorkDir, repo_root};
use serde_json::Value;

const GITHUB: &str = "# .github/workflows/canary-xds-diff.yaml";
const GITLAB: &str = "# .gitlab-ci.yml";
/// The file both jobs write the markdown to and post.
const COMMENT: &str = "canary-xds-diff.md";

/// The ```yaml block of docs/diff.md whose first line is `first`, parsed.
fn docs_job(first: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join("docs/diff.md")).unwrap();
    let mut blocks = text.split("\n```yaml\n").skip(1);
    let block = blocks
        .find_map(|b| {
            let body = b.split("\n```\n").next().unwrap();
            body.starts_with(&format!("{first}\n")).then_some(body)
        })
        .unwrap_or_else(|| panic!("docs/diff.md has no ```yaml block starting with {first}"));
    serde_saphyr::from_str(block).unwrap_or_else(|e| panic!("{first} does not parse: {e}"))
}

/// One CI job's diff step: its shell script and the environment the CI gives it.
struct Step {
    script: String,
    env: BTreeMap<String, String>,
}

/// GitHub's step that runs `canary-xds diff`, its `${{ }}` expressions filled in as GitHub
/// would for pull request 7 whose base is `base_sha`.
fn github_step(base_sha: &str) -> Step {
    let doc = docs_job(GITHUB);
    let steps = doc["jobs"]
        .as_object()
        .expect("jobs")
        .values()
        .flat_map(|j| j["steps"].as_array().expect("steps"));
    let step = steps
        .into_iter()
        .find(|s| {
            s["run"]
                .as_str()
                .is_some_and(|r| r.contains("canary-xds diff"))
        })
        .expect("a step runs canary-xds diff");
    let expressions = BTreeMap::from([
        ("github.event.pull_request.base.sha", base_sha),
        ("github.event.pull_request.number", "7"),
        ("github.repository", "example/mappings"),
        ("github.token", "test-token"),
    ]);
    let env = step["env"]
        .as_object()
        .map(|env| {
            env.iter()
                .map(|(k, v)| {
                    let v = v.as_str().expect("env values are strings");
                    let expr = v
                        .strip_prefix("${{")
                        .and_then(|e| e.strip_suffix("}}"))
                        .map(str::trim);
                    let value = match expr {
                        Some(e) => expressions
                            .get(e)
                            .unwrap_or_else(|| panic!("no test value for ${{{{ {e} }}}}")),
                        None => v,
                    };
                    (k.clone(), value.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    Step {
        script: step["run"].as_str().unwrap().to_string(),
        env,
    }
}

/// GitLab's `canary-xds-diff` job: its `script` entries, with its `variables` expanded from
/// the predefined variables of merge request 7 in project 42 whose merge base is `base_sha`.
fn gitlab_step(base_sha: &str) -> Step {
    let doc = docs_job(GITLAB);
    let job = &doc["canary-xds-diff"];
    let predefined = BTreeMap::from([
        ("CI_MERGE_REQUEST_DIFF_BASE_SHA", base_sha),
        ("CI_API_V4_URL", "https://gitlab.example.com/api/v4"),
        ("CI_PROJECT_ID", "42"),
        ("CI_MERGE_REQUEST_IID", "7"),
        ("CI_PIPELINE_SOURCE", "merge_request_event"),
        ("CANARY_XDS_DIFF_TOKEN", "test-token"),
    ]);
    let mut env: BTreeMap<String, String> = predefined
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (k, v) in job["variables"].as_object().expect("variables") {
        let v = v.as_str().expect("variables are strings");
        let value = match v.strip_prefix('$') {
            Some(name) => predefined
                .get(name)
                .unwrap_or_else(|| panic!("no test value for ${name}"))
                .to_string(),
            None => v.to_string(),
        };
        env.insert(k.clone(), value);
    }
    let script: Vec<&str> = job["script"]
        .as_array()
        .expect("script")
        .iter()
        .map(|s| s.as_str().expect("script entries are strings"))
        .collect();
    Step {
        script: script.join("\n"),
        env,
    }
}

/// `git` in `dir`, with none of the machine's configuration; fails the test if git does.
fn git(dir: &Path, home: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The repository the pull requests are made in: `main` holds the docs' example (the canary at
/// 10%) in `mappings/`, and each branch changes one thing.
struct Origin {
    dir: PathBuf,
    home: PathBuf,
    base_sha: String,
}

impl Origin {
    fn new(work: &Path) -> Origin {
        let (dir, home) = (work.join("origin"), work.join("home"));
        std::fs::create_dir_all(dir.join("mappings")).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        let fixtures = repo_root().join("tests/fixtures/diff");
        let copy = |from: &str, to: &str| {
            std::fs::copy(fixtures.join(from), dir.join("mappings").join(to)).unwrap();
        };
        copy("docs-example/base/qotm.yaml", "qotm.yaml");
        copy("docs-example/base/qotmv2.yaml", "qotmv2.yaml");
        std::fs::write(dir.join("README.md"), "Our Mappings.\n").unwrap();
        git(
            &dir,
            &home,
            &["-c", "init.defaultBranch=main", "init", "-q"],
        );
        let commit = |message: &str| {
            git(&dir, &home, &["add", "-A"]);
            git(&dir, &home, &["commit", "-q", "-m", message]);
        };
        commit("the canary at 10%");
        let base_sha = git(&dir, &home, &["rev-parse", "HEAD"]);
        let branch = |name: &str, change: &dyn Fn()| {
            git(&dir, &home, &["checkout", "-q", "-b", name, "main"]);
            change();
            commit(name);
        };
        branch("canary-25", &|| {
            copy("docs-example/new/qotmv2.yaml", "qotmv2.yaml")
        });
        branch("mistyped", &|| {
            copy("invalid-new/new/qotmv2.yaml", "qotmv2.yaml")
        });
        branch("same-traffic", &|| {
            let path = dir.join("mappings/qotm.yaml");
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(path, format!("# Owned by the qotm team.\n{text}")).unwrap();
        });
        git(&dir, &home, &["checkout", "-q", "main"]);
        Origin {
            dir,
            home,
            base_sha,
        }
    }

    /// A shallow clone of `branch`, as CI checks a pull request out: the base commit is not in
    /// it, so the job has to fetch it.
    fn checkout(&self, work: &Path, branch: &str) -> PathBuf {
        let to = work.join(format!("checkout-{branch}"));
        let url = format!("file://{}", self.dir.display());
        git(
            work,
            &self.home,
            &[
                "clone",
                "-q",
                "--depth",
                "1",
                "--branch",
                branch,
                &url,
                to.to_str().unwrap(),
            ],
        );
        to
    }
}

/// What a run of a job's step did.
struct Run {
    code: Option<i32>,
    /// The arguments of the `gh` or `curl` call that posted the comment, if one did.
    posted: Option<Vec<String>>,
    /// The markdown the job wrote.
    comment: String,
    log: String,
}

impl Run {
    /// Everything about the run, for a failure's message.
    fn report(&self) -> String {
        format!(
            "exit {:?}, posted {:?}\n--- the step's output\n{}--- {COMMENT}\n{}",
            self.code, self.posted, self.log, self.comment
        )
    }
}

/// Runs `step` in `checkout` as the runners do (`bash -eo pipefail`), with `canary-xds` on
/// `PATH` and `gh` and `curl` as stubs recording their arguments.
fn run(step: &Step, work: &Path, checkout: &Path, home: &Path) -> Run {
    let bin = work.join("bin");
    let posted = work.join("posted");
    let _ = std::fs::remove_file(&posted);
    if !bin.exists() {
        std::fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_canary-xds"), bin.join("canary-xds"))
            .unwrap();
        for tool in ["gh", "curl"] {
            let stub = bin.join(tool);
            let script = format!(
                "#!/bin/sh\nprintf '%s\\n' {tool} \"$@\" > '{}'\n",
                posted.display()
            );
            std::fs::write(&stub, script).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args([
            "--noprofile",
            "--norc",
            "-eo",
            "pipefail",
            "-c",
            &step.script,
        ])
        .current_dir(checkout)
        .env_clear()
        .env("PATH", path)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .envs(&step.env)
        .output()
        .expect("bash runs");
    Run {
        code: out.status.code(),
        posted: std::fs::read_to_string(&posted)
            .ok()
            .map(|s| s.lines().map(str::to_string).collect()),
        comment: std::fs::read_to_string(checkout.join(COMMENT)).unwrap_or_default(),
        log: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// The three pull requests through one CI's job: the canary moved (a comment, the job passes),
/// a weight with an error (a comment, the job fails), the same traffic (no comment).
fn pull_requests_through(ci: &str, step: fn(&str) -> Step, post: &[&str]) {
    let work = WorkDir::new();
    let origin = Origin::new(work.path());
    let step = step(&origin.base_sha);

    let checkout = origin.checkout(work.path(), "canary-25");
    let r = run(&step, work.path(), &checkout, &origin.home);
    assert_eq!(r.code, Some(0), "{ci}: {}", r.report());
    let posted = r
        .posted
        .as_ref()
        .unwrap_or_else(|| panic!("{ci}: no comment: {}", r.report()));
    for arg in post {
        assert!(
            posted.iter().any(|a| a.contains(arg)),
            "{ci}: {arg} not in {posted:?}"
        );
    }
    assert!(
        r.comment.contains("qotmv2  10.00% -> 25.00%  (+15.00)")
            && r.comment.starts_with("### canary-xds diff"),
        "{ci}: {}",
        r.report()
    );

    // The same job again in the same checkout after the runner's clean, as a runner that keeps
    // its build directory runs it: the worktree is added again.
    git(&checkout, &origin.home, &["clean", "-ffdxq"]);
    let again = run(&step, work.path(), &checkout, &origin.home);
    assert_eq!(
        (again.code, &again.comment),
        (Some(0), &r.comment),
        "{ci}: {}",
        again.report()
    );

    let checkout = origin.checkout(work.path(), "mistyped");
    let r = run(&step, work.path(), &checkout, &origin.home);
    assert_eq!(r.code, Some(1), "{ci}: NEW has an error: {}", r.report());
    assert!(
        r.posted.is_some(),
        "{ci}: the errors are posted: {}",
        r.report()
    );
    assert!(
        r.comment.contains("held_back") && r.comment.contains("weight must be a number"),
        "{ci}: {}",
        r.report()
    );

    let checkout = origin.checkout(work.path(), "same-traffic");
    let r = run(&step, work.path(), &checkout, &origin.home);
    assert_eq!(
        (r.code, &r.posted),
        (Some(0), &None),
        "{ci}: {}",
        r.report()
    );
}

#[test]
fn the_github_actions_job_of_the_docs_comments_the_diff() {
    pull_requests_through(
        "GitHub Actions",
        github_step,
        &["gh", "comment", "7", "--body-file", COMMENT],
    );
}

#[test]
fn the_gitlab_ci_job_of_the_docs_comments_the_diff() {
    pull_requests_through(
        "GitLab CI",
        gitlab_step,
        &[
            "curl",
            "PRIVATE-TOKEN: test-token",
            &format!("body@{COMMENT}"),
            "https://gitlab.example.com/api/v4/projects/42/merge_requests/7/notes",
        ],
    );
}

/// The fenced blocks of docs/diff.md opened by `fence` (` ```json`, ` ````markdown`...), each up
/// to the closing fence of the same length, without trailing blank lines.
fn docs_blocks(fence: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join("docs/diff.md")).unwrap();
    let close = format!(
        "\n{}\n",
        "`".repeat(fence.chars().take_while(|c| *c == '`').count())
    );
    text.split(&format!("\n{fence}\n"))
        .skip(1)
        .map(|b| b.split(&close).next().unwrap().trim_end().to_string())
        .collect()
}

#[test]
fn the_docs_examples_are_the_golden_files() {
    let golden = |ext: &str| {
        std::fs::read_to_string(common::golden_path(&format!("diff/docs-example.{ext}")))
            .unwrap()
            .trim_end()
            .to_string()
    };
    let table = docs_blocks("```console");
    let command = "$ canary-xds diff docs-example/base docs-example/new\n";
    assert!(
        table
            .iter()
            .any(|b| b.strip_prefix(command) == Some(golden("txt").as_str())),
        "docs/diff.md's table example is not tests/golden/diff/docs-example.txt"
    );
    assert!(
        docs_blocks("````markdown").contains(&golden("md")),
        "docs/diff.md's markdown example is not tests/golden/diff/docs-example.md"
    );
    assert!(
        docs_blocks("```json").contains(&golden("json")),
        "docs/diff.md's JSON example is not tests/golden/diff/docs-example.json"
    );
}
