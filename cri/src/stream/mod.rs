//! The streaming server (docs/cri.md "Streaming"): Exec, Attach and
//! PortForward answer with a URL of ours, `http://ADDR/{exec,attach,
//! portforward}/TOKEN`; the client (crictl, the kubelet's API-server proxy)
//! connects there and upgrades to a WebSocket carrying the kubelet's
//! channel protocols (remote.rs, portforward.rs). A plain TCP listener and
//! tokio-tungstenite's own HTTP upgrade: the WebSocket handshake is the only
//! HTTP this server speaks.

pub mod portforward;
pub mod remote;
pub mod tokens;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};

use crate::api::{
    AttachRequest, AttachResponse, ExecRequest, ExecResponse, PortForwardRequest,
    PortForwardResponse,
};
use crate::error::{CriError, Result};
use crate::state::Cri;
use tokens::{Pending, Tokens};

/// The default address: loopback only (as containerd's stream_server_address),
/// a fixed port so a firewall rule or a kubelet proxy can name it.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:10010";

/// The server's address and its pending requests.
pub struct Streaming {
    pub addr: SocketAddr,
    pub tokens: Tokens,
}

impl Streaming {
    pub fn new(addr: SocketAddr) -> Self {
        Streaming {
            addr,
            tokens: Tokens::default(),
        }
    }

    fn url(&self, p: Pending) -> Result<String> {
        let kind = p.kind();
        let token = self
            .tokens
            .insert(p)
            .map_err(|e| CriError::FailedPrecondition(e.to_string()))?;
        Ok(format!("http://{}/{kind}/{token}", self.addr))
    }
}

/// The remotecommand protocols we speak, best first.
const REMOTE_PROTOCOLS: [&str; 2] = [remote::V5, remote::V4];
const PORTFORWARD_PROTOCOLS: [&str; 1] = [portforward::PROTOCOL];

fn checked_streams(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Result<()> {
    if !(stdin || stdout || stderr) {
        return Err(CriError::InvalidArgument(
            "one of stdin, stdout and stderr must be set".into(),
        ));
    }
    if tty && stderr {
        // The kubelet's rule: a terminal has one output stream.
        return Err(CriError::InvalidArgument(
            "tty and stderr cannot both be set".into(),
        ));
    }
    Ok(())
}

pub async fn exec(cri: &Cri, req: ExecRequest) -> Result<ExecResponse> {
    crate::containers::get(cri, &req.container_id)?;
    if req.cmd.is_empty() {
        return Err(CriError::InvalidArgument("cmd is required".into()));
    }
    checked_streams(req.stdin, req.stdout, req.stderr, req.tty)?;
    let url = cri.streaming.url(Pending::Exec(req))?;
    Ok(ExecResponse { url })
}

pub async fn attach(cri: &Cri, req: AttachRequest) -> Result<AttachResponse> {
    crate::containers::get(cri, &req.container_id)?;
    checked_streams(req.stdin, req.stdout, req.stderr, req.tty)?;
    let url = cri.streaming.url(Pending::Attach(req))?;
    Ok(AttachResponse { url })
}

pub async fn port_forward(cri: &Cri, req: PortForwardRequest) -> Result<PortForwardResponse> {
    crate::pods::get(cri, &req.pod_sandbox_id).await?;
    if let Some(p) = req.port.iter().find(|p| !(1..=65535).contains(*p)) {
        return Err(CriError::InvalidArgument(format!("port {p} is out of range")));
    }
    let url = cri.streaming.url(Pending::PortForward(req))?;
    Ok(PortForwardResponse { url })
}

/// Accepts clients until the listener fails; each is served by a task of
/// its own (dropped with the connection: nothing outlives a client).
pub async fn serve(listener: TcpListener, cri: Arc<Cri>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let cri = cri.clone();
                tokio::spawn(async move { serve_one(stream, cri).await });
            }
            Err(e) => {
                tracing::warn!("streaming server: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// What the handshake found: the request and the subprotocol agreed on.
struct Agreed {
    pending: Pending,
    protocol: &'static str,
    query: String,
}

/// The end of a session as client-go wants it: a close frame with 1000
/// (Normal) — one without a code reads as an error ("close 1005").
pub fn normal_close() -> tokio_tungstenite::tungstenite::Message {
    use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
    tokio_tungstenite::tungstenite::Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}

fn refuse(code: StatusCode, why: String) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(why));
    *r.status_mut() = code;
    r
}

/// The handshake's check: a known kind, a live token, a protocol we speak.
fn agree(tokens: &Tokens, req: &Request) -> std::result::Result<Agreed, ErrorResponse> {
    let path = req.uri().path().trim_start_matches('/');
    let (kind, token) = path
        .split_once('/')
        .ok_or_else(|| refuse(StatusCode::NOT_FOUND, format!("no such URL: /{path}")))?;
    let offered: Vec<&str> = req
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let ours: &[&'static str] = match kind {
        "exec" | "attach" => &REMOTE_PROTOCOLS,
        "portforward" => &PORTFORWARD_PROTOCOLS,
        _ => return Err(refuse(StatusCode::NOT_FOUND, format!("no such URL: /{path}"))),
    };
    let protocol = *ours.iter().find(|p| offered.contains(p)).ok_or_else(|| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("none of the subprotocols {offered:?} is spoken here (we speak {ours:?})"),
        )
    })?;
    let pending = tokens
        .take(kind, token)
        .map_err(|e| refuse(StatusCode::NOT_FOUND, e.to_string()))?;
    Ok(Agreed {
        pending,
        protocol,
        query: req.uri().query().unwrap_or("").to_string(),
    })
}

async fn serve_one(stream: TcpStream, cri: Arc<Cri>) {
    let _ = stream.set_nodelay(true);
    let agreed: Mutex<Option<Agreed>> = Mutex::new(None);
    let callback = |req: &Request, mut resp: Response| {
        let a = agree(&cri.streaming.tokens, req)?;
        resp.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(a.protocol),
        );
        *agreed.lock().unwrap_or_else(|e| e.into_inner()) = Some(a);
        Ok(resp)
    };
    let ws = match tokio_tungstenite::accept_hdr_async(stream, callback).await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!("streaming server: handshake: {e}");
            return;
        }
    };
    let Some(a) = agreed.into_inner().unwrap_or_else(|e| e.into_inner()) else {
        return;
    };
    let v5 = a.protocol == remote::V5;
    match a.pending {
        Pending::Exec(r) => remote::exec(&cri, ws, r, v5).await,
        Pending::Attach(r) => remote::attach(&cri, ws, r, v5).await,
        Pending::PortForward(r) => portforward::serve(&cri, ws, r, &a.query).await,
    }
}
