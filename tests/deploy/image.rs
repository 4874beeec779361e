//! The container image: the Dockerfile read statically (no container engine here), and
//! `.dockerignore` matched as Docker matches it.

use super::canary_xds_deployment;
use super::common::repo_root;

/// A Dockerfile instruction: its keyword (upper-case) and the rest of it.
struct Instruction {
    keyword: String,
    rest: String,
}

/// A build stage: its name (`FROM IMAGE AS NAME`) and its instructions, `FROM` first.
struct Stage {
    name: Option<String>,
    instructions: Vec<Instruction>,
}

impl Stage {
    /// The rest of each instruction with this keyword, in order.
    fn all(&self, keyword: &str) -> Vec<&str> {
        self.instructions
            .iter()
            .filter(|i| i.keyword == keyword)
            .map(|i| i.rest.as_str())
            .collect()
    }
}

/// A Dockerfile's stages: continuation lines joined, comments (and parser directives) out.
fn stages(text: &str) -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, rest) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        let i = Instruction {
            keyword: keyword.to_ascii_uppercase(),
            rest: rest.trim().to_string(),
        };
        if i.keyword == "FROM" {
            let name = match i.rest.split_whitespace().collect::<Vec<_>>()[..] {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name.to_string()),
                _ => None,
            };
            stages.push(Stage {
                name,
                instructions: vec![i],
            });
        } else {
            stages.last_mut().expect("FROM first").instructions.push(i);
        }
        current.clear();
    }
    stages
}

#[test]
fn the_dockerfile_builds_locked_and_ships_the_binary_alone_as_non_root() {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let stages = stages(&text);
    assert!(stages.len() >= 2, "a multi-stage build");
    let (build, runtime) = stages.split_at(stages.len() - 1);
    let runtime = &runtime[0];

    assert!(
        build
            .iter()
            .flat_map(|s| s.all("RUN"))
            .any(|r| r.contains("cargo build --release --locked")),
        "the build stage runs cargo build --release --locked"
    );

    let image = runtime.all("FROM")[0];
    assert!(
        image.contains("distroless/cc") || image.contains("-slim"),
        "a minimal runtime image: {image}"
    );
    let copies = runtime.all("COPY");
    assert_eq!(
        copies.len(),
        1,
        "one COPY into the runtime stage: {copies:?}"
    );
    let words: Vec<&str> = copies[0].split_whitespace().collect();
    let from = words[0]
        .strip_prefix("--from=")
        .expect("COPY --from=<build stage>");
    assert!(
        build.iter().any(|s| s.name.as_deref() == Some(from)),
        "{from} is a build stage"
    );
    let [_, source, dest] = words[..] else {
        panic!("one file copied: {words:?}")
    };
    assert!(
        source.ends_with("/canary-xds") && dest.ends_with("/canary-xds"),
        "{words:?}"
    );
    for keyword in ["ADD", "RUN"] {
        assert!(
            runtime.all(keyword).is_empty(),
            "{keyword} in the runtime stage"
        );
    }

    let user = *runtime
        .all("USER")
        .last()
        .expect("a USER in the runtime stage");
    let ids: Vec<u32> = user
        .split(':')
        .map(|id| {
            id.parse()
                .unwrap_or_else(|_| panic!("USER {user} is not numeric"))
        })
        .collect();
    assert!(ids[0] != 0, "USER {user} is root");

    assert_eq!(runtime.all("ENTRYPOINT"), [format!("[\"{dest}\"]")]);

    // The Deployment runs it as that user.
    let d = canary_xds_deployment();
    assert_eq!(
        d["spec"]["template"]["spec"]["securityContext"]["runAsUser"],
        u64::from(ids[0])
    );
}

/// Whether `.dockerignore`'s `patterns` leave `path` out of the build context, as Docker reads
/// them: each pattern is matched against the path and each of its parents, `*` within a name,
/// `**` across names, a `!` pattern lets back in, and the last pattern that matches decides.
fn docker_ignores(patterns: &[&str], path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    let mut ignored = false;
    for pattern in patterns {
        let (keep, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, *pattern),
        };
        let pattern: Vec<&str> = pattern.trim_matches('/').split('/').collect();
        if (1..=parts.len()).any(|n| glob_path(&pattern, &parts[..n])) {
            ignored = !keep;
        }
    }
    ignored
}

fn glob_path(pattern: &[&str], path: &[&str]) -> bool {
    match (pattern.first(), path.first()) {
        (None, None) => true,
        (Some(&"**"), _) => {
            glob_path(&pattern[1..], path) || (!path.is_empty() && glob_path(pattern, &path[1..]))
        }
        (Some(p), Some(name)) => {
            glob_name(p.as_bytes(), name.as_bytes()) && glob_path(&pattern[1..], &path[1..])
        }
        _ => false,
    }
}

fn glob_name(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob_name(&pattern[1..], name) || (!name.is_empty() && glob_name(pattern, &name[1..]))
        }
        (Some(b'?'), Some(_)) => glob_name(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) => p == n && glob_name(&pattern[1..], &name[1..]),
        _ => false,
    }
}

#[test]
fn dockerignore_keeps_target_out_and_lets_in_what_the_build_reads() {
    let text = std::fs::read_to_string(repo_root().join(".dockerignore")).unwrap();
    let patterns: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let out = [
        "target",
        "target/release/canary-xds",
        ".git",
        ".git/HEAD",
        "fuzz/target/x86_64-unknown-linux-gnu/release/pipeline",
        "fuzz/corpus/pipeline/0a1b",
        "benches/target/x",
        "deploy/kubernetes/base/kustomization.yaml",
        "docs/deploy.md",
    ];
    for path in out {
        assert!(
            docker_ignores(&patterns, path),
            "{path} is in the build context"
        );
    }
    // What `cargo build --release --locked` reads: the manifest, the lock file, the sources and
    // every bench target the manifest names (Cargo refuses a manifest whose targets are missing).
    let mut needed: Vec<String> = ["Cargo.toml", "Cargo.lock", "src/main.rs", "src/lib.rs"]
        .map(String::from)
        .into();
    needed.extend(bench_names().iter().map(|b| format!("benches/{b}.rs")));
    for path in &needed {
        assert!(repo_root().join(path).exists(), "{path}");
        assert!(
            !docker_ignores(&patterns, path),
            "{path} is kept out of the build context"
        );
    }
    // The matcher can say both.
    assert!(docker_ignores(&["*", "!src"], "Cargo.toml"));
    assert!(!docker_ignores(&["*", "!src"], "src/a/b.rs"));
}

/// The `[[bench]]` names of Cargo.toml, read line by line (the tests read no other TOML).
fn bench_names() -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    let mut names = Vec::new();
    let mut in_bench = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bench = line == "[[bench]]";
        } else if in_bench && let Some(v) = line.strip_prefix("name = ") {
            names.push(v.trim_matches('"').to_string());
        }
    }
    assert!(!names.is_empty(), "Cargo.toml names bench targets");
    names
}
