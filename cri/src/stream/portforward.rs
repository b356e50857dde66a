//! PortForward over the kubelet's WebSocket protocol (`portforward.k8s.io`,
//! pkg/kubelet/cri/streaming/portforward/websocket.go): the ports come in
//! the URL's query (`?port=80&port=443`, else the PortForwardRequest's);
//! port number i has data channel 2i and error channel 2i+1, and the first
//! message on each is the port as 2 bytes little-endian. Each port is dialed
//! at 127.0.0.1 inside the pod's network namespace: a socket made on a
//! thread of its own that joined it (setns), so no port is published and
//! berth-cri's own threads stay in the host's namespace.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::api::PortForwardRequest;
use crate::error::{CriError, Result};
use crate::state::Cri;

pub const PROTOCOL: &str = "portforward.k8s.io";

/// How long a dial inside the pod may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// The ports asked for: the query's `port` values, else the request's.
pub fn ports(query: &str, req: &PortForwardRequest) -> Result<Vec<u16>> {
    let mut ports = Vec::new();
    for pair in query.split('&') {
        if let Some(v) = pair.strip_prefix("port=") {
            let p: u16 = v
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| CriError::InvalidArgument(format!("bad port {v:?}")))?;
            ports.push(p);
        }
    }
    if ports.is_empty() {
        for p in &req.port {
            let p = u16::try_from(*p)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| CriError::InvalidArgument(format!("bad port {p}")))?;
            ports.push(p);
        }
    }
    match ports.len() {
        0 => Err(CriError::InvalidArgument("no port to forward".into())),
        n if n > 64 => Err(CriError::InvalidArgument("at most 64 ports".into())),
        _ => Ok(ports),
    }
}

/// Connects to 127.0.0.1:`port` inside `netns` (None: the host's, a
/// hostNetwork pod) from a thread made for it: setns changes only the
/// calling thread, and the socket stays in the namespace it was made in.
pub async fn dial(netns: Option<PathBuf>, port: u16) -> Result<TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let dialed = (|| -> std::io::Result<std::net::TcpStream> {
            if let Some(path) = netns {
                let ns = std::fs::File::open(&path)?;
                nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
            }
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let s = std::net::TcpStream::connect_timeout(&addr, DIAL_TIMEOUT)?;
            s.set_nonblocking(true)?;
            Ok(s)
        })();
        let _ = tx.send(dialed);
    });
    let s = rx
        .await
        .map_err(|_| CriError::Internal("the dialing thread died".into()))?
        .map_err(|e| {
            CriError::FailedPrecondition(format!("dialing port {port} in the pod: {e}"))
        })?;
    TcpStream::from_std(s).map_err(|e| CriError::Internal(e.to_string()))
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::binary(v)
}

pub async fn serve(
    cri: &Cri,
    ws: WebSocketStream<super::conn::Conn>,
    req: PortForwardRequest,
    query: &str,
) {
    let (mut sink, mut src) = ws.split();
    let setup = async {
        let ports = ports(query, &req)?;
        let pod = crate::pods::get(cri, &req.pod_sandbox_id).await?;
        let netns = (!pod.host_network).then(|| cri.sandboxes.ns_path(&pod.id, "net"));
        Ok::<_, CriError>((ports, netns))
    };
    let (ports, netns) = match setup.await {
        Ok(x) => x,
        Err(e) => {
            let _ = sink.send(frame(1, e.to_string().as_bytes())).await;
            let _ = sink.send(super::normal_close()).await;
            let _ = sink.close().await;
            return;
        }
    };
    // Each channel opens with its port (the client checks it).
    for (i, p) in ports.iter().enumerate() {
        let le = p.to_le_bytes();
        for ch in [2 * i as u8, 2 * i as u8 + 1] {
            if sink.send(frame(ch, &le)).await.is_err() {
                return;
            }
        }
    }
    let (tx, mut rx) = mpsc::channel::<Message>(16);
    let mut inputs = Vec::new();
    let mut readers = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        match dial(netns.clone(), *p).await {
            Ok(conn) => {
                let (mut r, w) = conn.into_split();
                inputs.push(Some(w));
                let tx = tx.clone();
                let data = 2 * i as u8;
                readers.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; 32 << 10];
                    while let Ok(n @ 1..) = r.read(&mut buf).await {
                        if tx.send(frame(data, &buf[..n])).await.is_err() {
                            return;
                        }
                    }
                }));
            }
            Err(e) => {
                inputs.push(None);
                let _ = tx
                    .send(frame(2 * i as u8 + 1, e.to_string().as_bytes()))
                    .await;
            }
        }
    }
    let aborts: Vec<_> = readers.iter().map(|r| r.abort_handle()).collect();
    let all_read = async {
        for r in readers {
            let _ = r.await;
        }
    };
    tokio::pin!(all_read);
    drop(tx);
    loop {
        tokio::select! {
            // Every connection ended (or none was made): done.
            () = &mut all_read => {
                while let Ok(m) = rx.try_recv() {
                    let _ = sink.send(m).await;
                }
                break;
            }
            Some(m) = rx.recv() => {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
            msg = src.next() => match msg {
                Some(Ok(Message::Binary(b))) if !b.is_empty() => {
                    let (ch, data) = (b[0] as usize, &b[1..]);
                    if ch % 2 == 0 {
                        if let Some(Some(w)) = inputs.get_mut(ch / 2) {
                            if w.write_all(data).await.is_err() {
                                inputs[ch / 2] = None;
                            }
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                _ => {}
            }
        }
    }
    // The client gone or the connections done: nothing outlives the session.
    aborts.iter().for_each(|a| a.abort());
    let _ = sink.send(super::normal_close()).await;
    let _ = sink.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_from_the_query_else_the_request() {
        let req = PortForwardRequest {
            pod_sandbox_id: "p".into(),
            port: vec![8080],
        };
        assert_eq!(ports("port=80&port=443", &req).unwrap(), [80, 443]);
        assert_eq!(ports("", &req).unwrap(), [8080]);
        assert!(ports("port=0", &req).is_err());
        assert!(ports("port=x", &req).is_err());
        let none = PortForwardRequest::default();
        assert!(ports("", &none).is_err());
    }
}
