//! A client's connection as the sessions see it: TCP, or TLS over it
//! (tls.rs), boxed behind one type; and its request head, read off the
//! front and put back (a TLS stream cannot be peeked), so that the
//! WebSocket handshake still reads the whole request and a SPDY session
//! gets whatever the client sent after the head.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

/// What a connection is: bytes both ways.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub type Conn = Box<dyn Io>;

/// The longest request head we read, and how long it may take to come
/// (the TLS handshake included).
const MAX_HEAD: usize = 16 << 10;
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection (past the TLS handshake when `tls`) and the bytes read
/// so far, holding the whole request head; None if it does not come whole
/// in time or within MAX_HEAD.
pub async fn accept(tcp: TcpStream, tls: Option<&TlsAcceptor>) -> Option<(Conn, Vec<u8>)> {
    let _ = tcp.set_nodelay(true);
    let reading = async {
        let mut conn: Conn = match tls {
            Some(a) => Box::new(a.accept(tcp).await.ok()?),
            None => Box::new(tcp),
        };
        let mut buf = Vec::with_capacity(4096);
        let mut chunk = [0u8; 4096];
        loop {
            let n = conn.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                return Some((conn, buf));
            }
            if buf.len() >= MAX_HEAD {
                return None;
            }
        }
    };
    tokio::time::timeout(HEAD_TIMEOUT, reading).await.ok()?
}

/// `conn` with `front` put back before what is still to be read.
pub fn rewound(conn: Conn, front: Vec<u8>) -> Conn {
    if front.is_empty() {
        return conn;
    }
    let (r, w) = tokio::io::split(conn);
    Box::new(tokio::io::join(std::io::Cursor::new(front).chain(r), w))
}
