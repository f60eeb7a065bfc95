//! `deploy/container/`: the Containerfile says what the image must be (multi-stage, user 65532,
//! ports, entrypoint, version label), and `build-image.sh` builds that image here without a
//! registry (umoci, from the release binary). The test builds it, inspects its configuration,
//! unpacks it and runs the image's own binary inside the image's root file system with `chroot`
//! as user 65532: `check` of the image's configuration and the `demo` must succeed.
//!
//! The release binary is used when `target/release/exhook-gateway` exists, else the debug one
//! (built if missing: the test suite's own build). Needs umoci (Debian: umoci) unless
//! `EXHOOK_SKIP_TOOLS=umoci`; running the image needs root (chroot): without it the test says
//! so loudly and checks the rest.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use exhook_deploy_check::require_tool;
use serde_json::Value;

const CONTAINERFILE: &str = "deploy/container/Containerfile";
const ENTRYPOINT: [&str; 4] = ["/usr/local/bin/exhook-gateway", "run", "--config", "/etc/exhook-gateway/gateway.toml"];
const PORTS: [&str; 3] = ["9000/tcp", "9443/tcp", "9100/tcp"];
const USER: &str = "65532:65532";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The cargo target directory (`CARGO_TARGET_TMPDIR` is `<target>/tmp`).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target/tmp has a parent").to_path_buf()
}

/// Straight to stderr: the harness hides captured output of passing tests.
fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

fn banner(text: &str) {
    let bar = "!".repeat(80);
    say(&format!("\n{bar}\n!!! {text}\n{bar}\n"));
}

fn run(what: &str, cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn containerfile_declares_the_image() {
    let text = std::fs::read_to_string(workspace_root().join(CONTAINERFILE)).unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.starts_with('#')).collect();
    let froms: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "{CONTAINERFILE}: a builder stage and a runtime stage: {froms:?}");
    assert!(froms[0].contains("rust:") && froms[0].ends_with("AS builder"), "{CONTAINERFILE}: {}", froms[0]);
    assert!(froms[1].contains("distroless/cc-debian12"), "{CONTAINERFILE}: runtime base {}", froms[1]);
    assert!(lines.contains(&"USER 65532:65532"), "{CONTAINERFILE}: USER 65532:65532");
    assert!(lines.contains(&"EXPOSE 9000 9443 9100"), "{CONTAINERFILE}: EXPOSE 9000 9443 9100");
    let entrypoint = format!("ENTRYPOINT {}", serde_json::to_string(&ENTRYPOINT).unwrap().replace(',', ", "));
    assert!(lines.contains(&entrypoint.as_str()), "{CONTAINERFILE}: {entrypoint}");
    assert!(text.contains("org.opencontainers.image.version=\"${VERSION}\""), "{CONTAINERFILE}: version label");
    assert!(text.contains("--version"), "{CONTAINERFILE}: the builder compares the label with --version");
    assert!(
        text.contains("COPY deploy/container/gateway.toml /etc/exhook-gateway/gateway.toml"),
        "{CONTAINERFILE}: ships the default configuration"
    );
}

/// The blob a descriptor names, in an OCI layout.
fn blob(layout: &Path, descriptor: &Value) -> Vec<u8> {
    let digest = descriptor["digest"].as_str().expect("descriptor digest");
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()
}

fn dir_size(path: &Path) -> u64 {
    let meta = std::fs::symlink_metadata(path).unwrap();
    if meta.is_dir() {
        std::fs::read_dir(path).unwrap().map(|e| dir_size(&e.unwrap().path())).sum()
    } else {
        meta.len()
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

#[test]
fn image_builds_offline_and_runs() {
    const TEST: &str = "image_builds_offline_and_runs";
    let Some(umoci) = require_tool(TEST, "umoci", "umoci") else { return };
    let root = workspace_root();
    let target = target_dir();

    // The release binary when a release build exists (its image is what README's sizes are
    // of); otherwise the debug one the test run already built: the image is made the same way
    // (stripped), only bigger, and CI does not pay for a release build here.
    let (binary, profile) = match target.join("release/exhook-gateway") {
        release if release.is_file() => (release, "release"),
        _ => (target.join("debug/exhook-gateway"), "debug"),
    };
    if binary.is_file() {
        say(&format!("{TEST}: using the {profile} binary {}", binary.display()));
    } else {
        say(&format!("{TEST}: {} missing: building it ({profile})", binary.display()));
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        run(
            "cargo build -p exhook-gateway",
            Command::new(cargo)
                .args(["build", "--locked", "-p", "exhook-gateway"])
                .current_dir(&root)
                .env("CARGO_TARGET_DIR", &target),
        );
    }
    let version = String::from_utf8(run("--version", Command::new(&binary).arg("--version")).stdout).unwrap();
    let version = version.trim();

    // Build.
    // Its own directory: another run of this test (a shared target/) must not build into it.
    let out = target.join(format!("container-test-{}", std::process::id()));
    let started = Instant::now();
    run(
        "deploy/container/build-image.sh",
        Command::new("bash")
            .arg(root.join("deploy/container/build-image.sh"))
            .arg(&out)
            .env("EXHOOK_GATEWAY_BIN", &binary)
            .env("CARGO_TARGET_DIR", &target),
    );
    let built_in = started.elapsed();

    // Inspect: index → manifest → config.
    let layout = out.join("oci");
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifests = index["manifests"].as_array().expect("index.json manifests");
    assert_eq!(manifests.len(), 1, "one tagged image: {index}");
    let tag = manifests[0]["annotations"]["org.opencontainers.image.ref.name"].as_str().expect("tag");
    assert_eq!(format!("exhook-gateway {tag}"), version, "the tag is the binary's version");
    let manifest: Value = serde_json::from_slice(&blob(&layout, &manifests[0])).unwrap();
    let image: Value = serde_json::from_slice(&blob(&layout, &manifest["config"])).unwrap();
    let config = &image["config"];
    assert_eq!(config["User"], USER, "{config}");
    assert_eq!(config["Entrypoint"], serde_json::json!(ENTRYPOINT), "{config}");
    assert!(config["Cmd"].is_null() || config["Cmd"] == serde_json::json!([]), "no Cmd: {config}");
    let ports: Vec<&str> =
        config["ExposedPorts"].as_object().expect("ExposedPorts").keys().map(String::as_str).collect();
    for port in PORTS {
        assert!(ports.contains(&port), "port {port} exposed: {ports:?}");
    }
    assert_eq!(config["Labels"]["org.opencontainers.image.version"], version, "{config}");
    assert_eq!(image["os"], "linux");
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "one layer: {manifest}");
    let compressed: u64 = layers.iter().map(|l| l["size"].as_u64().unwrap()).sum();
    let archive = std::fs::metadata(out.join("exhook-gateway.oci.tar")).expect("the OCI archive").len();

    // Unpack (umoci, as the runtime would) and look at the root file system.
    let bundle = out.join("unpacked");
    let mut unpack = Command::new(&umoci);
    unpack.arg("unpack");
    if !is_root() {
        unpack.arg("--rootless");
    }
    run("umoci unpack", unpack.arg("--image").arg(format!("{}:{tag}", layout.display())).arg(&bundle));
    let rootfs = bundle.join("rootfs");
    let unpacked = dir_size(&rootfs);
    for file in [
        "usr/local/bin/exhook-gateway",
        "etc/exhook-gateway/gateway.toml",
        "etc/ssl/certs/ca-certificates.crt",
        "etc/passwd",
        "etc/group",
    ] {
        assert!(rootfs.join(file).is_file(), "{file} in the image");
    }
    assert!(!rootfs.join("bin/sh").exists(), "no shell in the image");
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.lines().any(|l| l.starts_with("nonroot:x:65532:65532:")), "/etc/passwd has 65532: {passwd}");
    let toml = std::fs::read_to_string(rootfs.join("etc/exhook-gateway/gateway.toml")).unwrap();
    for listen in ["listen = \"0.0.0.0:9000\"", "listen = \"0.0.0.0:9100\""] {
        assert!(toml.contains(listen), "the image's gateway.toml: {listen}");
    }
    // The runtime's view (umoci's runtime-spec config.json): the process it would start.
    let spec: Value = serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["process"]["user"]["uid"], 65532);
    assert_eq!(spec["process"]["args"], serde_json::json!(ENTRYPOINT));

    say(&format!(
        "\n== container image ({TEST})\n  built by:   deploy/container/build-image.sh (umoci) in {built_in:.1?}\n  \
         image:      {}:{tag}, archive {}\n  label:      org.opencontainers.image.version={version}\n  \
         user:       {}\n  entrypoint: {}\n  ports:      {}\n  size:       layer {} compressed, archive {}, root fs {} unpacked",
        layout.display(),
        out.join("exhook-gateway.oci.tar").display(),
        config["User"].as_str().unwrap(),
        ENTRYPOINT.join(" "),
        ports.join(" "),
        mib(compressed),
        mib(archive),
        mib(unpacked),
    ));

    // Run the image's binary in the image's root file system, as the image's user.
    if !is_root() {
        banner(&format!(
            "{TEST}: NOT RUN inside the image: chroot needs root (this run is not). Built and inspected only."
        ));
        let _ = std::fs::remove_dir_all(&out);
        return;
    }
    let Some(chroot) = require_tool(TEST, "chroot", "coreutils") else { return };
    let chroot = |args: &[&str]| {
        let mut cmd = Command::new("timeout");
        cmd.arg("120")
            .arg(&chroot)
            .args(["--userspec", USER])
            .arg(&rootfs)
            .arg(ENTRYPOINT[0])
            .args(args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin");
        cmd
    };
    let check = run("exhook-gateway check in the image (chroot)", &mut chroot(&["check", "--config", ENTRYPOINT[3]]));
    let check = String::from_utf8_lossy(&check.stdout);
    assert!(check.contains(": OK ("), "check in the image: {check}");
    let demo = run("exhook-gateway demo in the image (chroot)", &mut chroot(&["demo"]));
    let demo = String::from_utf8_lossy(&demo.stdout);
    assert!(demo.contains("<= EMQX gets"), "the demo in the image printed no answers:\n{demo}");
    say(&format!(
        "  ran:        chroot --userspec {USER} <rootfs> {}: `check --config {}` OK ({}), `demo` exit 0 ({} EMQX answers)\n",
        ENTRYPOINT[0],
        ENTRYPOINT[3],
        check.lines().next().unwrap_or_default(),
        demo.matches("<= EMQX gets").count()
    ));
    // Kept when an assertion failed above, for a look.
    let _ = std::fs::remove_dir_all(&out);
}
