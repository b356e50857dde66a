//! SPDY tunnelled in a WebSocket: how client-go ≥ 1.30 port-forwards with
//! `--transport websocket` (client-go tools/portforward/tunneling_dialer.go,
//! subprotocol `SPDY/3.1+portforward.k8s.io`). After the WebSocket upgrade
//! the client speaks plain SPDY/3.1, its bytes cut into binary messages at
//! whatever boundaries its writes had (TunnelingConnection: one message per
//! Write, read back as one byte stream). So the session is spdy_session.rs's,
//! unchanged, run over an in-memory pipe whose other end this module copies
//! to and from the WebSocket's binary messages.

use super::conn::Conn;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::spdy;
use super::tokens::Pending;
use crate::state::Cri;

/// The subprotocol: client-go's WebsocketsSPDYTunnelingPrefix +
/// `portforward.k8s.io`.
pub const PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// The pipe's buffer per direction.
const PIPE: usize = 64 << 10;

/// Serves `pending` as a SPDY session over `ws`; returns when either side
/// ends (the other is then dropped with everything it holds).
pub async fn serve(cri: &Cri, ws: WebSocketStream<Conn>, pending: Pending) {
    let (ours, theirs) = tokio::io::duplex(PIPE);
    let (r, w) = tokio::io::split(ours);
    let session = super::spdy_session::serve(cri, Box::new(r), Box::new(w), pending);
    // Both run in this task: a session that ends drops its end of the pipe
    // (the tunnel reads EOF and closes the WebSocket); a client that goes
    // ends the tunnel, which drops the other end (the session reads EOF).
    tokio::join!(session, tunnel(ws, theirs));
}

/// Copies the pipe's end `end` to and from `ws` until either ends.
async fn tunnel(ws: WebSocketStream<Conn>, end: DuplexStream) {
    let (mut sink, mut src) = ws.split();
    let (mut from_session, mut to_session) = tokio::io::split(end);
    // The two directions run apart: one blocked (a full pipe while the
    // session waits to write) never stops the other from draining.
    let inbound = async {
        while let Some(Ok(m)) = src.next().await {
            // Pings are answered by tungstenite itself; client-go sends
            // no text.
            let gone = match m {
                Message::Binary(b) => to_session.write_all(&b).await.is_err(),
                Message::Close(_) => true,
                _ => false,
            };
            if gone {
                return;
            }
        }
    };
    let outbound = async {
        let mut buf = vec![0u8; spdy::MAX_DATA + 64];
        while let Ok(n @ 1..) = from_session.read(&mut buf).await {
            if sink.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                return false;
            }
        }
        true
    };
    let session_done = tokio::select! {
        () = inbound => false,
        done = outbound => done,
    };
    drop(to_session);
    if session_done {
        // client-go reads a close without a code as an error.
        let _ = sink.send(super::normal_close()).await;
    }
    let _ = sink.close().await;
}
