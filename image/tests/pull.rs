//! Registry pull: against a real registry (Debian's docker-registry on
//! 127.0.0.1, the image pushed there by skopeo from a layout built here),
//! and against a small in-test registry for what a stock registry does not
//! do on demand: bearer tokens, a broken transfer to resume, a wrong blob.

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_image::content::ContentError;
use berth_image::pull::PullError;
use berth_image::{Error, ErrorKind, ImageStore, PullOptions};
use common::*;

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// docker-registry serving from a temp dir; killed on drop.
struct Registry {
    child: Child,
    port: u16,
}

impl Registry {
    fn start(dir: &Path) -> Registry {
        let port = free_port();
        let config = dir.join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let reg = Registry { child, port };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn skopeo_copy(src: &str, dest: &str, all: bool) {
    let mut cmd = Command::new("skopeo");
    cmd.args([
        "--insecure-policy",
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
    ]);
    if all {
        cmd.arg("--all");
    }
    let out = cmd.args([src, dest]).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo copy {src} {dest}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn pull_from_a_real_registry() {
    if !root_or_skip("pull_from_a_real_registry") {
        return;
    }
    for cmd in ["docker-registry", "skopeo"] {
        if !have(cmd) {
            println!(
                "SKIP pull_from_a_real_registry: {cmd} is not installed (scripts/deps installs it)"
            );
            return;
        }
    }
    let t = TempDir::new("registry");
    let reg = Registry::start(t.path());
    let layout = t.join("layout");
    busybox_layout(&layout, "latest");
    let dest = format!("127.0.0.1:{}/test/busybox:v1", reg.port);
    skopeo_copy(
        &format!("oci:{}:latest", layout.display()),
        &format!("docker://{dest}"),
        false,
    );

    let store = ImageStore::open(&t.join("store")).unwrap();
    let mut seen = Vec::new();
    let rec = store
        .pull(&dest, &PullOptions::default(), &mut |p| {
            seen.push(p.clone())
        })
        .unwrap();
    assert_eq!(rec.name, dest);
    assert_eq!(rec.layers.len(), 2);
    let imported = ImageStore::open(&t.join("store2")).unwrap();
    let local = imported
        .import(&layout, &Default::default())
        .unwrap()
        .remove(0);
    assert_eq!(rec.config, local.config, "the same image came back");
    assert_eq!(rec.chain_ids(), local.chain_ids());
    assert!(
        seen.iter()
            .any(|p| p.done == p.total && p.total > 1_000_000),
        "progress of the busybox layer"
    );
    let lowers = store.unpack(&dest).unwrap();
    assert_eq!(
        fs::read(lowers[0].join("bin/busybox")).unwrap(),
        fs::read(BUSYBOX).unwrap()
    );

    // Again: nothing to download. By digest: the same record content.
    seen.clear();
    store
        .pull(&dest, &PullOptions::default(), &mut |p| {
            seen.push(p.clone())
        })
        .unwrap();
    assert!(seen.is_empty());
    let by_digest = format!("127.0.0.1:{}/test/busybox@{}", reg.port, rec.manifest);
    let r2 = store
        .pull(&by_digest, &PullOptions::default(), &mut |_| {})
        .unwrap();
    assert_eq!(
        (r2.manifest.clone(), r2.name.clone()),
        (rec.manifest.clone(), by_digest)
    );

    // A missing tag: NotFound, nothing added.
    let blobs = store.content().list().unwrap();
    let err = store
        .pull(
            &format!("127.0.0.1:{}/test/busybox:nope", reg.port),
            &PullOptions::default(),
            &mut |_| {},
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(store.content().list().unwrap(), blobs);
    assert!(
        fs::read_dir(store.root().join("pull"))
            .unwrap()
            .next()
            .is_none(),
        "no partial left"
    );
}

/// A registry in a thread: manifests and blobs of an OCI layout, bearer
/// auth, Range; `cut_first` ends the first transfer of that blob halfway;
/// `corrupt` serves other bytes for that blob.
struct Mock {
    port: u16,
    stop: Arc<AtomicBool>,
    ranges: Arc<AtomicUsize>,
    token_requests: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Clone, Default)]
struct MockConf {
    cut_first: Option<String>,
    corrupt: Option<String>,
}

impl Mock {
    fn start(layout: PathBuf, conf: MockConf) -> Mock {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let ranges = Arc::new(AtomicUsize::new(0));
        let token_requests = Arc::new(AtomicUsize::new(0));
        let cut_done = Arc::new(Mutex::new(false));
        let (s, r, tr) = (stop.clone(), ranges.clone(), token_requests.clone());
        let thread = std::thread::spawn(move || {
            for conn in l.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                serve(conn, &layout, port, &conf, &r, &tr, &cut_done);
            }
        });
        Mock {
            port,
            stop,
            ranges,
            token_requests,
            thread: Some(thread),
        }
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn respond(c: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8], send: usize) {
    let mut h = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    let _ = c.write_all(h.as_bytes());
    let _ = c.write_all(&body[..send.min(body.len())]);
    let _ = c.flush();
}

fn serve(
    mut c: TcpStream,
    layout: &Path,
    port: u16,
    conf: &MockConf,
    ranges: &AtomicUsize,
    tokens: &AtomicUsize,
    cut_done: &Mutex<bool>,
) {
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    if path.starts_with("/token") {
        tokens.fetch_add(1, Ordering::SeqCst);
        // "user:pass" in base64.
        if headers.get("authorization").map(String::as_str) != Some("Basic dXNlcjpwYXNz") {
            return respond(&mut c, "401 Unauthorized", &[], b"", 0);
        }
        return respond(&mut c, "200 OK", &[], br#"{"token":"tok123"}"#, usize::MAX);
    }
    if headers.get("authorization").map(String::as_str) != Some("Bearer tok123") {
        let challenge = format!(
            r#"Bearer realm="http://127.0.0.1:{port}/token",service="mock",scope="repository:test/bb:pull""#
        );
        return respond(
            &mut c,
            "401 Unauthorized",
            &[("WWW-Authenticate", challenge)],
            b"{}",
            2,
        );
    }
    let blobs = layout.join("blobs/sha256");
    let name = path.rsplit('/').next().unwrap_or("");
    if path.contains("/manifests/") {
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
        let d = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
        if name != "v1" && name != d {
            return respond(
                &mut c,
                "404 Not Found",
                &[],
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#,
                usize::MAX,
            );
        }
        let body = fs::read(blobs.join(d.trim_start_matches("sha256:"))).unwrap();
        let ct = ("Content-Type", berth_image::oci::OCI_MANIFEST.to_owned());
        return respond(&mut c, "200 OK", &[ct], &body, usize::MAX);
    }
    let hex = name.trim_start_matches("sha256:");
    let Ok(mut body) = fs::read(blobs.join(hex)) else {
        return respond(&mut c, "404 Not Found", &[], b"{}", usize::MAX);
    };
    if conf.corrupt.as_deref() == Some(name) {
        let mid = body.len() / 2;
        body[mid] ^= 0xff;
    }
    if let Some(from) = headers
        .get("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok())
    {
        ranges.fetch_add(1, Ordering::SeqCst);
        let total = body.len();
        let range = (
            "Content-Range",
            format!("bytes {from}-{}/{total}", total - 1),
        );
        return respond(
            &mut c,
            "206 Partial Content",
            &[range],
            &body[from..],
            usize::MAX,
        );
    }
    let mut send = usize::MAX;
    if conf.cut_first.as_deref() == Some(name) {
        let mut done = cut_done.lock().unwrap();
        if !*done {
            *done = true;
            send = body.len() / 2;
        }
    }
    respond(&mut c, "200 OK", &[], &body, send);
}

fn creds() -> PullOptions {
    PullOptions {
        credentials: Some(("user".into(), "pass".into())),
        ..PullOptions::default()
    }
}

#[test]
fn pull_with_token_auth_resumes_a_broken_blob() {
    if !root_or_skip("pull_with_token_auth_resumes_a_broken_blob") {
        return;
    }
    let t = TempDir::new("mock-pull");
    let layout = t.join("layout");
    let (base, top) = busybox_layers();
    let base = BlobLayer::plain(base);
    let big = base.diff_id.to_string();
    write_layout(&layout, &[base, BlobLayer::gzip(top)], "v1");
    let mock = Mock::start(
        layout.clone(),
        MockConf {
            cut_first: Some(big.clone()),
            ..MockConf::default()
        },
    );
    let store = ImageStore::open(&t.join("store")).unwrap();
    let reference = format!("127.0.0.1:{}/test/bb:v1", mock.port);

    // No credentials: the token endpoint refuses; a named auth error.
    let err = store
        .pull(&reference, &PullOptions::default(), &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, Error::Pull(PullError::Auth { .. })), "{err}");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert_empty(&store);

    let mut seen = Vec::new();
    let rec = store
        .pull(&reference, &creds(), &mut |p| seen.push(p.clone()))
        .unwrap();
    assert_eq!(rec.layers.len(), 2);
    assert!(
        mock.ranges.load(Ordering::SeqCst) >= 1,
        "the cut transfer was resumed with Range"
    );
    assert!(
        seen.iter()
            .any(|p| p.digest.to_string() == big && p.resumed_from > 0),
        "{seen:?}"
    );
    assert!(mock.token_requests.load(Ordering::SeqCst) >= 2);
    store.unpack(&reference).unwrap();
    assert!(fs::read_dir(store.root().join("pull"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn pull_of_a_corrupted_blob_leaves_nothing() {
    if !root_or_skip("pull_of_a_corrupted_blob_leaves_nothing") {
        return;
    }
    let t = TempDir::new("mock-corrupt");
    let layout = t.join("layout");
    let top = Layer::new().file("x", &vec![5u8; 100_000], 0o644).finish();
    let l = BlobLayer::gzip(top);
    let bad = format!("sha256:{}", berth_image::Digest::of(&l.blob).hex());
    write_layout(&layout, &[BlobLayer::plain(small_base()), l], "v1");
    let mock = Mock::start(
        layout,
        MockConf {
            corrupt: Some(bad),
            ..MockConf::default()
        },
    );
    let store = ImageStore::open(&t.join("store")).unwrap();
    let err = store
        .pull(
            &format!("127.0.0.1:{}/test/bb:v1", mock.port),
            &creds(),
            &mut |_| {},
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::Content(ContentError::DigestMismatch { .. })),
        "{err}"
    );
    assert_empty(&store);
    assert!(
        fs::read_dir(store.root().join("pull"))
            .unwrap()
            .next()
            .is_none(),
        "the bad download is gone"
    );
}

/// The caller's credentials go to the registry (here the mock as the
/// `location` of `registry.example/test`), never to a mirror (the same
/// mock as a mirror: its token endpoint is asked without them and refuses,
/// and the pull falls through to registry.example, which does not exist).
#[test]
fn credentials_go_to_the_registry_never_to_a_mirror() {
    if !root_or_skip("credentials_go_to_the_registry_never_to_a_mirror") {
        return;
    }
    use berth_image::registries::{Mirror, Registries, Registry};
    let t = TempDir::new("mock-mirror");
    let layout = t.join("layout");
    write_layout(&layout, &[BlobLayer::plain(small_base())], "v1");
    let mock = Mock::start(layout, MockConf::default());
    let store = ImageStore::open(&t.join("store")).unwrap();
    let mock_at = format!("127.0.0.1:{}/test", mock.port);
    let table = |mirror: bool| Registry {
        prefix: Some("registry.example.invalid/test".into()),
        location: (!mirror).then(|| mock_at.clone()),
        insecure: false,
        mirror: if mirror {
            vec![Mirror {
                location: mock_at.clone(),
                insecure: false,
            }]
        } else {
            vec![]
        },
    };
    let name = "registry.example.invalid/test/bb:v1";

    let opts = PullOptions {
        registries: Registries::new(vec![table(true)]).unwrap(),
        ..creds()
    };
    let err = store.pull(name, &opts, &mut |_| {}).unwrap_err();
    assert!(
        mock.token_requests.load(Ordering::SeqCst) >= 1,
        "the mirror was asked first"
    );
    assert!(
        err.to_string().contains("registry.example.invalid"),
        "{err}"
    );
    assert_empty(&store);

    let opts = PullOptions {
        registries: Registries::new(vec![table(false)]).unwrap(),
        ..creds()
    };
    let rec = store.pull(name, &opts, &mut |_| {}).unwrap();
    assert_eq!(rec.name, name, "the image keeps the name it was asked for");
}
