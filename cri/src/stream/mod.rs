//! The streaming server (docs/cri.md "Streaming"): Exec, Attach and
//! PortForward answer with a URL of ours, `http://ADDR/{exec,attach,
//! portforward}/TOKEN`; the client (crictl, the kubelet's API-server proxy)
//! connects there and upgrades to a WebSocket carrying the kubelet's
//! channel protocols (remote.rs, portforward.rs), to SPDY/3.1
//! (spdy_session.rs), or to SPDY tunnelled in a WebSocket (spdy_tunnel.rs,
//! port-forward's `--transport websocket`). A plain TCP listener and
//! tokio-tungstenite's own HTTP upgrade (SPDY's is answered here): the
//! upgrades are the only HTTP this server speaks.

pub mod conn;
mod output;
pub mod portforward;
pub mod remote;
pub mod spdy;
mod spdy_portforward;
mod spdy_session;
mod spdy_tunnel;
pub mod tls;
pub mod tokens;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use conn::Conn;
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

/// The server's address, its TLS (URLs are https:// then), and its
/// pending requests.
pub struct Streaming {
    pub addr: SocketAddr,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub tokens: Tokens,
}

impl Streaming {
    pub fn new(addr: SocketAddr, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        Streaming {
            addr,
            tls,
            tokens: Tokens::default(),
        }
    }

    fn url(&self, p: Pending) -> Result<String> {
        let kind = p.kind();
        let token = self
            .tokens
            .insert(p)
            .map_err(|e| CriError::FailedPrecondition(e.to_string()))?;
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        Ok(format!("{scheme}://{}/{kind}/{token}", self.addr))
    }
}

/// The remotecommand protocols we speak, best first.
const REMOTE_PROTOCOLS: [&str; 2] = [remote::V5, remote::V4];
const PORTFORWARD_PROTOCOLS: [&str; 1] = [portforward::PROTOCOL];
/// Over WebSocket, port-forward is also SPDY tunnelled in binary messages
/// (client-go ≥ 1.30's `--transport websocket`, spdy_tunnel.rs).
const WEBSOCKET_PORTFORWARD_PROTOCOLS: [&str; 2] = [portforward::PROTOCOL, spdy_tunnel::PROTOCOL];

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
        return Err(CriError::InvalidArgument(format!(
            "port {p} is out of range"
        )));
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

/// The upgrade's check: a known kind, a live token, a protocol we speak
/// (of those `offered`, from `ours_for(kind)`).
fn agree(
    tokens: &Tokens,
    path: &str,
    query: &str,
    offered: &[&str],
    ours_for: fn(&str) -> Option<&'static [&'static str]>,
) -> std::result::Result<Agreed, (StatusCode, String)> {
    let path = path.trim_start_matches('/');
    let not_found = || (StatusCode::NOT_FOUND, format!("no such URL: /{path}"));
    let (kind, token) = path.split_once('/').ok_or_else(not_found)?;
    let ours = ours_for(kind).ok_or_else(not_found)?;
    let protocol = *ours.iter().find(|p| offered.contains(p)).ok_or_else(|| {
        (
            StatusCode::BAD_REQUEST,
            format!("none of the subprotocols {offered:?} is spoken here (we speak {ours:?})"),
        )
    })?;
    let pending = tokens
        .take(kind, token)
        .map_err(|e| (StatusCode::NOT_FOUND, e.to_string()))?;
    Ok(Agreed {
        pending,
        protocol,
        query: query.to_string(),
    })
}

fn websocket_protocols(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "exec" | "attach" => Some(&REMOTE_PROTOCOLS),
        "portforward" => Some(&WEBSOCKET_PORTFORWARD_PROTOCOLS),
        _ => None,
    }
}

/// Over SPDY the stream half-close is SPDY's own FIN: v4 is all we need.
fn spdy_protocols(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "exec" | "attach" => Some(&[remote::V4]),
        "portforward" => Some(&PORTFORWARD_PROTOCOLS),
        _ => None,
    }
}

/// A header's values (comma-separated lists and repeats, flattened).
fn header_values<'a>(h: &'a [httparse::Header<'a>], name: &str) -> Vec<&'a str> {
    h.iter()
        .filter(|x| x.name.eq_ignore_ascii_case(name))
        .filter_map(|x| std::str::from_utf8(x.value).ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect()
}

/// An HTTP/1.1 upgrade to SPDY/3.1 (its head already read): answered
/// here (101 or the refusal), then spdy_session.rs serves the connection.
async fn serve_spdy(
    mut stream: Conn,
    cri: Arc<Cri>,
    agreed: std::result::Result<Agreed, (StatusCode, String)>,
) {
    use tokio::io::AsyncWriteExt;
    match agreed {
        Ok(a) => {
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {}\r\n\r\n",
                a.protocol
            );
            if stream.write_all(answer.as_bytes()).await.is_ok() {
                let (r, w) = tokio::io::split(stream);
                spdy_session::serve(&cri, Box::new(r), Box::new(w), a.pending).await;
            }
        }
        Err((code, why)) => {
            let answer = format!(
                "HTTP/1.1 {code}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{why}",
                why.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    }
}

// tungstenite's handshake callback returns its own (large) ErrorResponse.
#[allow(clippy::result_large_err)]
async fn serve_one(stream: TcpStream, cri: Arc<Cri>) {
    let Some((conn, head)) = conn::accept(stream, cri.streaming.tls.as_ref()).await else {
        return;
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(head_len)) = req.parse(&head) else {
        return;
    };
    let upgrade = header_values(req.headers, "upgrade");
    if upgrade
        .iter()
        .any(|u| u.to_ascii_lowercase().starts_with("spdy/"))
    {
        let (path, query) = req
            .path
            .unwrap_or("/")
            .split_once('?')
            .unwrap_or((req.path.unwrap_or("/"), ""));
        let offered = header_values(req.headers, "x-stream-protocol-version");
        let agreed = agree(&cri.streaming.tokens, path, query, &offered, spdy_protocols);
        let after_head = head[head_len..].to_vec();
        return serve_spdy(conn::rewound(conn, after_head), cri, agreed).await;
    }
    let agreed: Mutex<Option<Agreed>> = Mutex::new(None);
    let callback = |req: &Request, mut resp: Response| {
        let offered: Vec<&str> = req
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let path = req.uri().path();
        let query = req.uri().query().unwrap_or("");
        let a = agree(
            &cri.streaming.tokens,
            path,
            query,
            &offered,
            websocket_protocols,
        )
        .map_err(|(code, why)| refuse(code, why))?;
        resp.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(a.protocol),
        );
        *agreed.lock().unwrap_or_else(|e| e.into_inner()) = Some(a);
        Ok(resp)
    };
    let stream = conn::rewound(conn, head);
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
    if a.protocol == spdy_tunnel::PROTOCOL {
        return spdy_tunnel::serve(&cri, ws, a.pending).await;
    }
    match a.pending {
        Pending::Exec(r) => remote::exec(&cri, ws, r, v5).await,
        Pending::Attach(r) => remote::attach(&cri, ws, r, v5).await,
        Pending::PortForward(r) => portforward::serve(&cri, ws, r, &a.query).await,
    }
}
