//! Exec, Attach and PortForward over SPDY/3.1 (what crictl, critest and
//! kubectl use by default): after the HTTP upgrade the client opens one
//! stream per channel, named by its `streamtype` header — error, stdin,
//! stdout, stderr, resize (`v4.channel.k8s.io`), or per forwarded
//! connection a data and an error stream with `port` and `requestid`
//! (`portforward.k8s.io`). We answer each with SYN_REPLY, send output as
//! DATA on its stream, end a stream with FIN, and put the v4 status on the
//! error stream. The framing is spdy.rs.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::output::Output;
use super::remote::{self, Session, Writer, STDOUT};
use super::spdy::{self, Frame, HeaderReader, HeaderWriter};
use super::tokens::Pending;
use crate::error::CriError;
use crate::state::Cri;

/// How long the client has to open the streams it asked for (the
/// kubelet's streamCreationTimeout is 30 s).
const STREAMS_TIMEOUT: Duration = Duration::from_secs(30);

/// The connection's reading side: frames, with the header decompressor.
pub(super) struct Incoming {
    r: Box<dyn AsyncRead + Unpin + Send>,
    buf: Vec<u8>,
    headers: HeaderReader,
}

impl Incoming {
    pub(super) async fn next(&mut self) -> Option<Frame> {
        loop {
            match spdy::parse(&self.buf) {
                Ok(Some((f, used))) => {
                    self.buf.drain(..used);
                    return Some(f);
                }
                Ok(None) => {}
                Err(_) => return None,
            }
            let mut chunk = vec![0u8; 64 << 10];
            match self.r.read(&mut chunk).await {
                Ok(n @ 1..) => self.buf.extend_from_slice(&chunk[..n]),
                _ => return None,
            }
        }
    }

    /// A SYN_STREAM's (stream id, headers).
    pub(super) fn syn_stream(&mut self, payload: &[u8]) -> Option<(u32, HashMap<String, String>)> {
        let id = spdy::first_word(payload).ok()?;
        let block = self.headers.read(payload.get(10..)?).ok()?;
        let h = spdy::decode_headers(&block).ok()?;
        Some((
            id,
            h.into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
        ))
    }
}

/// The connection's writing side: whole frames in order, from any task.
#[derive(Clone)]
pub(super) struct Outgoing(mpsc::Sender<Vec<u8>>);

impl Outgoing {
    fn start(mut w: Box<dyn AsyncWrite + Unpin + Send>) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
        let task = tokio::spawn(async move {
            while let Some(f) = rx.recv().await {
                if w.write_all(&f).await.is_err() {
                    break;
                }
            }
            let _ = w.shutdown().await;
        });
        (Outgoing(tx), task)
    }

    pub(super) async fn send(&self, frame: Vec<u8>) -> bool {
        self.0.send(frame).await.is_ok()
    }

    pub(super) async fn data(&self, stream: u32, bytes: &[u8], fin: bool) -> bool {
        let flags = if fin { spdy::FLAG_FIN } else { 0 };
        self.send(spdy::data(stream, flags, bytes)).await
    }
}

pub(super) fn reply(hw: &mut HeaderWriter, id: u32) -> Vec<u8> {
    let mut payload = id.to_be_bytes().to_vec();
    payload.extend_from_slice(&hw.write(&spdy::encode_headers(&[])));
    spdy::control(spdy::SYN_REPLY, 0, &payload)
}

/// Serves an upgraded connection for `pending`: the TCP connection itself
/// (an HTTP upgrade to SPDY/3.1) or the byte stream tunnelled in a
/// WebSocket's binary messages (spdy_tunnel.rs).
pub async fn serve(
    cri: &Cri,
    r: Box<dyn AsyncRead + Unpin + Send>,
    w: Box<dyn AsyncWrite + Unpin + Send>,
    pending: Pending,
) {
    let mut inc = Incoming {
        r,
        buf: Vec::new(),
        headers: HeaderReader::default(),
    };
    let (out, writer) = Outgoing::start(w);
    let mut hw = HeaderWriter::default();
    match pending {
        Pending::Exec(req) => {
            let want = wanted(req.stdin, req.stdout, req.stderr, req.tty);
            if let Some(ids) = open_streams(&mut inc, &out, &mut hw, &want).await {
                let started = remote::start_exec(cri, &req).await;
                relay(cri, inc, &out, ids, started).await;
            }
        }
        Pending::Attach(req) => {
            let want = wanted(req.stdin, req.stdout, req.stderr, req.tty);
            if let Some(ids) = open_streams(&mut inc, &out, &mut hw, &want).await {
                let started = remote::start_attach(cri, &req).await;
                relay(cri, inc, &out, ids, started).await;
            }
        }
        Pending::PortForward(req) => super::spdy_portforward::serve(cri, inc, &out, hw, req).await,
    }
    drop(out);
    let _ = writer.await;
}

fn wanted(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Vec<&'static str> {
    let mut w = vec!["error"];
    if stdin {
        w.push("stdin");
    }
    if stdout {
        w.push("stdout");
    }
    if stderr && !tty {
        w.push("stderr");
    }
    if tty {
        w.push("resize");
    }
    w
}

/// Waits for the client to open every stream `want` names (answering
/// each, and pings meanwhile): their ids by type.
async fn open_streams(
    inc: &mut Incoming,
    out: &Outgoing,
    hw: &mut HeaderWriter,
    want: &[&str],
) -> Option<HashMap<String, u32>> {
    let mut ids: HashMap<String, u32> = HashMap::new();
    let opening = async {
        while !want.iter().all(|t| ids.contains_key(*t)) {
            match inc.next().await? {
                Frame::Control {
                    kind: spdy::SYN_STREAM,
                    payload,
                    ..
                } => {
                    let (id, h) = inc.syn_stream(&payload)?;
                    out.send(reply(hw, id)).await;
                    if let Some(t) = h.get("streamtype") {
                        ids.insert(t.clone(), id);
                    }
                }
                Frame::Control {
                    kind: spdy::PING,
                    payload,
                    ..
                } => {
                    out.send(spdy::control(spdy::PING, 0, &payload)).await;
                }
                Frame::Control {
                    kind: spdy::GOAWAY, ..
                } => return None,
                _ => {}
            }
        }
        Some(())
    };
    tokio::time::timeout(STREAMS_TIMEOUT, opening)
        .await
        .ok()??;
    Some(ids)
}

/// Copies one output to the streams of its channels (`streams`: channel →
/// stream id), then ends them (FIN).
async fn pump(mut o: Output, streams: Vec<(u8, u32)>, out: Outgoing) {
    let mut buf = vec![0u8; spdy::MAX_DATA];
    while let Some((channel, n)) = o.read(&mut buf).await {
        let Some((_, id)) = streams.iter().find(|(c, _)| *c == channel) else {
            continue;
        };
        if !out.data(*id, &buf[..n], false).await {
            return;
        }
    }
    for (_, id) in streams {
        out.data(id, &[], true).await;
    }
}

/// As remote.rs's relay, on SPDY streams.
async fn relay(
    cri: &Cri,
    mut inc: Incoming,
    out: &Outgoing,
    ids: HashMap<String, u32>,
    started: Result<Session, CriError>,
) {
    let error_id = ids["error"];
    let s = match started {
        Ok(s) => s,
        Err(e) => {
            let status = remote::status_json(Err(e.to_string()));
            out.data(error_id, status.as_bytes(), true).await;
            return;
        }
    };
    let m = match cri.manager().await {
        Ok(m) => m,
        Err(_) => return,
    };
    let mut pumps = Vec::new();
    for o in s.outputs {
        let streams: Vec<(u8, u32)> = o
            .channels()
            .into_iter()
            .filter_map(|ch| {
                let name = match ch {
                    STDOUT => "stdout",
                    _ => "stderr",
                };
                ids.get(name).map(|id| (ch, *id))
            })
            .collect();
        if !streams.is_empty() {
            pumps.push(tokio::spawn(pump(o, streams, out.clone())));
        }
    }
    let aborts: Vec<_> = pumps.iter().map(|p| p.abort_handle()).collect();
    let (id, exec) = (s.container.clone(), s.exec.clone());
    let finish = async {
        for p in pumps {
            let _ = p.await;
        }
        match &exec {
            Some(e) => m
                .wait_exec(&id, e)
                .await
                .map(|(c, _)| c)
                .map_err(|e| e.to_string()),
            None => Ok(0),
        }
    };
    tokio::pin!(finish);
    let mut input: Option<Writer> = s.input;
    let (stdin_id, resize_id) = (ids.get("stdin").copied(), ids.get("resize").copied());
    let mut resize_buf = Vec::new();
    loop {
        tokio::select! {
            code = &mut finish => {
                let status = remote::status_json(code);
                out.data(error_id, status.as_bytes(), true).await;
                // The client closes once it has read everything.
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    while inc.next().await.is_some() {}
                }).await;
                break;
            }
            f = inc.next() => match f {
                Some(Frame::Data { stream, flags, data }) if Some(stream) == stdin_id => {
                    if let Some(i) = input.as_mut() {
                        if !data.is_empty() && i.write_all(&data).await.is_err() {
                            input = None;
                        }
                    }
                    if flags & spdy::FLAG_FIN != 0 {
                        if let Some(mut i) = input.take() {
                            let _ = i.shutdown().await;
                        }
                    }
                }
                Some(Frame::Data { stream, data, .. }) if Some(stream) == resize_id => {
                    resize_buf.extend_from_slice(&data);
                    while let Some(nl) = resize_buf.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = resize_buf.drain(..=nl).collect();
                        if let (Some(t), Some((rows, cols))) = (&s.terminal, remote::size(&line)) {
                            let _ = m.resize_terminal(&s.container, t, rows, cols).await;
                        }
                    }
                }
                Some(Frame::Control { kind: spdy::PING, payload, .. }) => {
                    out.send(spdy::control(spdy::PING, 0, &payload)).await;
                }
                Some(Frame::Control { kind: spdy::GOAWAY, .. }) | None => {
                    // The client went: an exec is killed, an attach detached.
                    if let Some(e) = &s.exec {
                        let _ = m.kill_exec(&s.container, e, libc::SIGKILL).await;
                    }
                    aborts.iter().for_each(|a| a.abort());
                    break;
                }
                _ => {}
            }
        }
    }
}
