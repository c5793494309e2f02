//! The Dockerfile builds what the crate is: no Docker engine runs in CI, so these checks read
//! the Dockerfile and Cargo.toml and fail when they disagree — the binary it builds and copies,
//! the stub files its cached dependency layer needs, the files the build embeds, the toolchain,
//! and the runtime conventions (non-root, health check on /healthz, exposed listen port).
//! hadolint lints the same file in `.ci/run`.

use std::collections::BTreeSet;
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Dockerfile instructions with continuation lines joined and comments dropped.
fn instructions() -> Vec<String> {
    let text = read("Dockerfile");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.starts_with('#') || trimmed.is_empty()) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(line);
            out.push(std::mem::take(&mut current).trim().to_string());
        }
    }
    out
}

fn manifest() -> toml::Table {
    read("Cargo.toml").parse().expect("Cargo.toml")
}

/// The one `[[bin]]` target's name.
fn bin_name(manifest: &toml::Table) -> String {
    let bins = manifest["bin"].as_array().expect("[[bin]]");
    assert_eq!(bins.len(), 1, "one binary");
    bins[0]["name"].as_str().expect("bin name").to_string()
}

/// The stages: `(FROM line, its instructions)`.
fn stages() -> Vec<(String, Vec<String>)> {
    let mut stages: Vec<(String, Vec<String>)> = Vec::new();
    for i in instructions() {
        if i.starts_with("FROM ") {
            stages.push((i, Vec::new()));
        } else if let Some(last) = stages.last_mut() {
            last.1.push(i);
        }
    }
    stages
}

#[test]
fn builds_and_copies_the_crates_binary() {
    let manifest = manifest();
    let bin = bin_name(&manifest);
    let stages = stages();
    assert!(stages.len() >= 2, "multi-stage build");
    let (builder_from, builder) = &stages[0];
    let builder_name = builder_from
        .rsplit_once(" AS ")
        .or_else(|| builder_from.rsplit_once(" as "))
        .expect("the build stage is named")
        .1
        .trim();

    let builds: Vec<&String> = builder
        .iter()
        .filter(|i| i.starts_with("RUN") && i.contains("cargo build"))
        .collect();
    assert!(!builds.is_empty(), "the build stage runs cargo build");
    for b in &builds {
        assert!(
            b.contains("--release") && b.contains("--locked"),
            "every build is --release --locked: {b}"
        );
    }
    let last = builds.last().expect("a build");
    assert!(
        last.contains(&format!("--bin {bin}")),
        "the final build builds --bin {bin}: {last}"
    );

    let (runtime_from, runtime) = stages.last().expect("runtime stage");
    let copy = runtime
        .iter()
        .find(|i| i.starts_with(&format!("COPY --from={builder_name} ")))
        .expect("the runtime stage copies from the build stage");
    let parts: Vec<&str> = copy.split_whitespace().collect();
    let workdir = builder
        .iter()
        .find_map(|i| i.strip_prefix("WORKDIR "))
        .expect("build WORKDIR")
        .trim();
    assert_eq!(
        parts[2],
        format!("{workdir}/target/release/{bin}"),
        "copies the binary cargo builds"
    );
    let installed = parts[3];
    let entrypoint = runtime
        .iter()
        .find_map(|i| i.strip_prefix("ENTRYPOINT "))
        .expect("ENTRYPOINT");
    let entry: Vec<String> = serde_json::from_str(entrypoint).expect("ENTRYPOINT in JSON form");
    assert!(
        entry[0] == bin || entry[0] == installed,
        "ENTRYPOINT runs the copied binary: {entry:?}"
    );
    assert!(
        installed.starts_with("/usr/local/bin/") || entry[0] == installed,
        "{installed} is on PATH or named in full"
    );
    assert!(
        runtime_from.contains("-slim") || runtime_from.contains("distroless"),
        "slim runtime image: {runtime_from}"
    );
}

#[test]
fn toolchain_is_at_least_the_crates_rust_version() {
    let manifest = manifest();
    let wanted = manifest["package"]["rust-version"]
        .as_str()
        .expect("rust-version");
    let (from, _) = &stages()[0];
    let tag = from
        .split_whitespace()
        .nth(1)
        .and_then(|image| image.strip_prefix("rust:"))
        .expect("the build stage is an official rust image");
    let version = |v: &str| -> Vec<u32> {
        v.split(['.', '-'])
            .take(3)
            .map_while(|p| p.parse().ok())
            .collect()
    };
    assert!(
        version(tag) >= version(wanted),
        "rust:{tag} is older than rust-version {wanted}"
    );
}

/// The dependency layer builds against stub sources: its awk program must name a stub for
/// every target Cargo.toml declares, or `cargo build` refuses the manifest.
#[test]
fn dependency_layer_stubs_every_declared_target() {
    let joined = instructions().join("\n");
    let start = joined.find("awk '").expect("the stub step uses awk") + "awk '".len();
    let end = start
        + joined[start..]
            .find("' Cargo.toml")
            .expect("awk '…' Cargo.toml");
    let program = &joined[start..end];
    let out = std::process::Command::new("awk")
        .arg(program)
        .arg(Path::new(ROOT).join("Cargo.toml"))
        .output()
        .expect("run awk");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stubbed: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();

    let manifest = manifest();
    let mut needed = BTreeSet::new();
    if let Some(lib) = manifest.get("lib") {
        needed.insert(lib["path"].as_str().unwrap_or("src/lib.rs").to_string());
    }
    for (kind, dir) in [
        ("bin", "src/bin"),
        ("bench", "benches"),
        ("test", "tests"),
        ("example", "examples"),
    ] {
        for target in manifest
            .get(kind)
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            let path = match target.get("path") {
                Some(p) => p.as_str().expect("path").to_string(),
                None => format!("{dir}/{}.rs", target["name"].as_str().expect("target name")),
            };
            needed.insert(path);
        }
    }
    let missing: Vec<_> = needed.difference(&stubbed).collect();
    assert!(
        missing.is_empty(),
        "the dependency layer has no stub for {missing:?}"
    );
}

/// Files the build embeds (`include_str!`, `sqlx::migrate!`) outside `src/` must be copied
/// into the build stage.
#[test]
fn every_embedded_file_is_copied() {
    let copied: Vec<String> = stages()[0]
        .1
        .iter()
        .filter_map(|i| i.strip_prefix("COPY "))
        .filter(|c| !c.starts_with("--from"))
        .flat_map(|c| {
            let parts: Vec<&str> = c.split_whitespace().collect();
            parts[..parts.len() - 1]
                .iter()
                .map(|p| p.trim_start_matches("./").to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut embedded = BTreeSet::new();
    let mut stack = vec![Path::new(ROOT).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let source = std::fs::read_to_string(&path).expect("read");
            for (marker, relative_to_file) in [
                ("include_str!(\"", true),
                ("include_bytes!(\"", true),
                ("migrate!(\"", false),
            ] {
                for piece in source.split(marker).skip(1) {
                    let arg = &piece[..piece.find('"').expect("closing quote")];
                    let full = if relative_to_file {
                        path.parent().expect("dir").join(arg)
                    } else {
                        Path::new(ROOT).join(arg)
                    };
                    let full = full.canonicalize().unwrap_or_else(|e| panic!("{arg}: {e}"));
                    let rel = full
                        .strip_prefix(Path::new(ROOT).canonicalize().expect("root"))
                        .expect("inside the crate")
                        .to_string_lossy()
                        .into_owned();
                    embedded.insert(rel);
                }
            }
        }
    }
    assert!(embedded.contains("openapi/openapi.yaml"), "{embedded:?}");
    for file in &embedded {
        assert!(
            copied
                .iter()
                .any(|c| file == c || file.starts_with(&format!("{}/", c.trim_end_matches('/')))),
            "{file} is embedded by the build but not copied into the build stage (COPY {copied:?})"
        );
    }
}

#[test]
fn runtime_runs_as_non_root_with_a_healthcheck_on_the_listen_port() {
    let stages = stages();
    let runtime = &stages.last().expect("runtime").1;
    let user = runtime
        .iter()
        .filter_map(|i| i.strip_prefix("USER "))
        .next_back()
        .expect("USER");
    let uid = user.split(':').next().expect("uid");
    assert!(
        uid != "0" && uid != "root",
        "the runtime user is not root: {user}"
    );
    let env = runtime
        .iter()
        .filter(|i| i.starts_with("ENV "))
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    let listen = env
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("PRESIGND_SERVER__LISTEN="))
        .expect("the image sets PRESIGND_SERVER__LISTEN");
    let port = listen.rsplit(':').next().expect("port");
    assert!(
        listen.starts_with("0.0.0.0:") || listen.starts_with("[::]:"),
        "listens on all interfaces inside the container: {listen}"
    );
    assert!(
        runtime.iter().any(|i| i == &format!("EXPOSE {port}")),
        "EXPOSE {port}"
    );
    assert!(
        env.contains("PRESIGND_CONFIG=/"),
        "the config is a mounted file"
    );
    let health = runtime
        .iter()
        .find(|i| i.starts_with("HEALTHCHECK "))
        .expect("HEALTHCHECK");
    assert!(
        health.contains(&format!("127.0.0.1:{port}/healthz")),
        "the health check probes /healthz on the listen port: {health}"
    );
}
