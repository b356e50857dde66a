//! berth-cri: serves the CRI (RuntimeService + ImageService) on a unix
//! socket, socket-activated by berth-cri.socket (/run/berth/cri.sock) or
//! binding the socket itself when started by hand.

use std::collections::HashMap;
use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_cri::api::image_service_server::ImageServiceServer;
use berth_cri::api::runtime_service_server::RuntimeServiceServer;
use berth_cri::sandbox::Sandboxes;
use berth_cri::service::Service;
use berth_cri::state::Cri;
use berth_cri::store::Store;

struct Args {
    listen: PathBuf,
    state_dir: PathBuf,
    run_dir: PathBuf,
    cni_conf_dir: PathBuf,
    /// The streaming server's address (Exec/Attach/PortForward URLs).
    stream_address: String,
    /// PEM certificate chain and key: the streaming server speaks TLS.
    stream_tls_cert: Option<PathBuf>,
    stream_tls_key: Option<PathBuf>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        listen: "/run/berth/cri.sock".into(),
        state_dir: "/var/lib/berth/cri".into(),
        run_dir: "/run/berth/cri".into(),
        cni_conf_dir: "/etc/cni/net.d".into(),
        stream_address: berth_cri::stream::DEFAULT_ADDRESS.into(),
        stream_tls_cert: None,
        stream_tls_key: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || {
            it.next()
                .map(PathBuf::from)
                .ok_or(format!("{k} needs a value"))
        };
        match k.as_str() {
            "--listen" => a.listen = v()?,
            "--state-dir" => a.state_dir = v()?,
            "--run-dir" => a.run_dir = v()?,
            "--cni-conf-dir" => a.cni_conf_dir = v()?,
            "--stream-address" => a.stream_address = v()?.to_string_lossy().into_owned(),
            "--stream-tls-cert" => a.stream_tls_cert = Some(v()?),
            "--stream-tls-key" => a.stream_tls_key = Some(v()?),
            "--version" => {
                println!("berth-cri {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?} (known: --listen, --state-dir, --run-dir, \
                     --cni-conf-dir, --stream-address, --stream-tls-cert, --stream-tls-key, \
                     --version)"
                ))
            }
        }
    }
    Ok(a)
}

/// The listening socket systemd passed (fd 3), if it passed one.
fn activated() -> Option<std::os::unix::net::UnixListener> {
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    let fds: u32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    if pid != std::process::id() || fds < 1 {
        return None;
    }
    // SAFETY: sd_listen_fds' contract: fd 3 is ours, a listening socket.
    Some(unsafe { std::os::unix::net::UnixListener::from_raw_fd(3) })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .init();
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("berth-cri: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(a).await {
        eprintln!("berth-cri: {e}");
        std::process::exit(1);
    }
    // Not the runtime's drop: it would wait for blocking tasks still at
    // work (a CNI plugin run, say), which the next start repairs anyway.
    std::process::exit(0);
}

async fn run(a: Args) -> Result<(), Box<dyn std::error::Error>> {
    // Read before anything is opened: a bad file is a named error at start.
    let tls = match (&a.stream_tls_cert, &a.stream_tls_key) {
        (Some(c), Some(k)) => Some(berth_cri::stream::tls::acceptor(c, k)?),
        (None, None) => None,
        _ => return Err(berth_cri::stream::tls::TlsError::Half.into()),
    };
    let store = Arc::new(Store::open(&a.state_dir)?);
    // Made now, not at the first pod: Status names it (the `stateDir` whose
    // parent critest checks for idmapped mounts).
    std::fs::create_dir_all(a.run_dir.join("pods"))?;
    let conn = zbus::Connection::system().await?;
    // Bound before anything is served: a URL handed out is always live.
    let stream_listener = tokio::net::TcpListener::bind(&a.stream_address)
        .await
        .map_err(|e| format!("--stream-address {}: {e}", a.stream_address))?;
    let cri = Arc::new(Cri {
        store,
        sandboxes: Arc::new(Sandboxes {
            run_dir: a.run_dir.clone(),
            cni_conf_dir: a.cni_conf_dir.clone(),
            cache: berth_net::cache::Cache::new(a.state_dir.join("cni")),
        }),
        conn,
        private: Default::default(),
        events: tokio::sync::broadcast::channel(1024).0,
        pod_cidr: Mutex::new(String::new()),
        pod_locks: Mutex::new(HashMap::new()),
        streaming: berth_cri::stream::Streaming::new(stream_listener.local_addr()?, tls),
    });
    berth_cri::recovery::repair(&cri).await;
    tokio::spawn(berth_cri::events::watch_exits(cri.clone()));
    tokio::spawn(berth_cri::stream::serve(stream_listener, cri.clone()));

    let std_listener = match activated() {
        Some(l) => l,
        None => {
            if let Some(dir) = a.listen.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let _ = std::fs::remove_file(&a.listen);
            let l = std::os::unix::net::UnixListener::bind(&a.listen)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&a.listen, std::fs::Permissions::from_mode(0o660))?;
            l
        }
    };
    std_listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(std_listener)?;
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let svc = Service(cri);
    let _ = sd_notify_ready();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let server = tonic::transport::Server::builder()
        .add_service(RuntimeServiceServer::new(svc.clone()))
        .add_service(ImageServiceServer::new(svc))
        .serve_with_incoming(incoming);
    // SIGTERM: stop at once. A graceful shutdown would wait for the
    // kubelet's long-lived connections (and event streams) to go, which
    // they never do; every verb is safe to cut short (intent-first records,
    // repaired at the next start), as a kill -9 is.
    tokio::select! {
        r = server => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// READY=1 for Type=notify (nothing without NOTIFY_SOCKET).
fn sd_notify_ready() -> std::io::Result<()> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let s = std::os::unix::net::UnixDatagram::unbound()?;
    s.send_to(b"READY=1", PathBuf::from(path))?;
    Ok(())
}
