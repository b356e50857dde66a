//! Exec and Attach over the kubelet's WebSocket remotecommand protocol
//! (k8s.io/client-go/tools/remotecommand, `v4.channel.k8s.io` and
//! `v5.channel.k8s.io`): each binary message starts with its channel —
//! 0 stdin, 1 stdout, 2 stderr, 3 error (a metav1.Status as JSON, the exit
//! code in its details), 4 resize (`{"Width":…,"Height":…}`); v5 adds 255,
//! `[255, channel]` closing one (stdin's half-close).
//!
//! A non-terminal exec gets pipes of ours as its stdio (berthd's stdin_fd/
//! stdout_fd/stderr_fd: the streams stay apart); a terminal exec and an
//! attach go through berthd's attach socket. A client that goes away kills
//! the exec (nothing is left running for nobody); an attach just detaches.

use std::collections::HashMap;
use std::os::fd::OwnedFd;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use zbus::zvariant::Value;

use super::output::Output;
use crate::api::{AttachRequest, ExecRequest};
use crate::error::{CriError, Result};
use crate::exec::{fd_option, ours_nonblocking, raw_pipe};
use crate::state::Cri;

pub const V4: &str = "v4.channel.k8s.io";
pub const V5: &str = "v5.channel.k8s.io";

pub(super) const STDIN: u8 = 0;
pub(super) const STDOUT: u8 = 1;
pub(super) const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

type Ws = WebSocketStream<super::conn::Conn>;
pub(super) type Reader = Box<dyn AsyncRead + Unpin + Send>;
pub(super) type Writer = Box<dyn AsyncWrite + Unpin + Send>;

/// One session's ends: what the process writes (per channel), where its
/// stdin goes, whose terminal a resize is for, and which exec it waits for.
pub(super) struct Session {
    pub container: String,
    pub outputs: Vec<Output>,
    pub input: Option<Writer>,
    /// exec id ("" for the container's own terminal) of a terminal.
    pub terminal: Option<String>,
    /// The exec to wait for (its code is the status) and to kill when the
    /// client goes; None for an attach.
    pub exec: Option<String>,
}

/// The metav1.Status of the error channel: Success, or the exit code as
/// the kubelet reports it (client-go turns it into an ExitError).
pub fn status_json(code: std::result::Result<i32, String>) -> String {
    match code {
        Ok(0) => r#"{"metadata":{},"status":"Success"}"#.to_string(),
        Ok(c) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {c}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": c.to_string()}]},
        })
        .to_string(),
        Err(e) => serde_json::json!({
            "metadata": {}, "status": "Failure", "message": e, "reason": "InternalError",
        })
        .to_string(),
    }
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::binary(v)
}

fn io_err(e: std::io::Error) -> CriError {
    CriError::Internal(e.to_string())
}

/// Refuses the session on its error channel (the client shows the message).
async fn fail(mut ws: Ws, e: CriError) {
    let _ = ws
        .send(frame(ERROR, status_json(Err(e.to_string())).as_bytes()))
        .await;
    let _ = ws.send(super::normal_close()).await;
}

pub async fn exec(cri: &Cri, ws: Ws, req: ExecRequest, v5: bool) {
    match start_exec(cri, &req).await {
        Ok(s) => relay(cri, ws, s, v5).await,
        Err(e) => fail(ws, e).await,
    }
}

pub(super) async fn start_exec(cri: &Cri, req: &ExecRequest) -> Result<Session> {
    let m = cri.manager().await?;
    let id = &req.container_id;
    let mut process = serde_json::json!({ "args": req.cmd });
    let mut o: HashMap<&str, Value> = HashMap::new();
    if req.tty {
        // The pty is the shim's: its output and input through AttachExec.
        process["terminal"] = serde_json::json!(true);
        o.insert("attach", Value::from(true));
        let exec_id = m.exec_container(id, &process.to_string(), o).await?;
        let fd: OwnedFd = m.attach_exec(id, &exec_id).await?.into();
        let (out, input) = unix_halves(fd)?;
        return Ok(Session {
            container: id.clone(),
            outputs: vec![Output::plain(out, STDOUT)],
            input: req.stdin.then_some(input),
            terminal: Some(exec_id.clone()),
            exec: Some(exec_id),
        });
    }
    let mut outputs: Vec<Output> = Vec::new();
    let mut input: Option<Writer> = None;
    if req.stdin {
        let (r, w) = raw_pipe()?;
        ours_nonblocking(&w)?;
        o.insert("stdin_fd", fd_option(r));
        let w = tokio::net::unix::pipe::Sender::from_owned_fd(w).map_err(io_err)?;
        input = Some(Box::new(w));
    }
    for (want, key, channel) in [
        (req.stdout, "stdout_fd", STDOUT),
        (req.stderr, "stderr_fd", STDERR),
    ] {
        if want {
            let (r, w) = raw_pipe()?;
            ours_nonblocking(&r)?;
            o.insert(key, fd_option(w));
            let r = tokio::net::unix::pipe::Receiver::from_owned_fd(r).map_err(io_err)?;
            outputs.push(Output::plain(Box::new(r), channel));
        }
    }
    // The write ends went with the message: the process holds the only ones.
    let exec_id = m.exec_container(id, &process.to_string(), o).await?;
    Ok(Session {
        container: id.clone(),
        outputs,
        input,
        terminal: None,
        exec: Some(exec_id),
    })
}

/// An attach socket as (output, input): two fds of one socket, so that
/// dropping the input is no half-close (tokio's write half would shut the
/// socket down on drop, closing the container's stdin); only an explicit
/// shutdown is.
fn unix_halves(fd: OwnedFd) -> Result<(Reader, Writer)> {
    let out = std::os::unix::net::UnixStream::from(fd);
    let input = out.try_clone().map_err(io_err)?;
    let mut halves = [out, input].into_iter().map(|s| {
        s.set_nonblocking(true)?;
        tokio::net::UnixStream::from_std(s)
    });
    let mut next = || {
        halves
            .next()
            .unwrap_or_else(|| Err(std::io::ErrorKind::Other.into()))
    };
    let out = next().map_err(io_err)?;
    let input = next().map_err(io_err)?;
    Ok((Box::new(out), Box::new(input)))
}

pub async fn attach(cri: &Cri, ws: Ws, req: AttachRequest, v5: bool) {
    match start_attach(cri, &req).await {
        Ok(s) => relay(cri, ws, s, v5).await,
        Err(e) => fail(ws, e).await,
    }
}

/// A terminal is one stream (AttachContainer); otherwise stdout and stderr
/// come apart (AttachContainerSplit), only those asked for. A container
/// whose monitor predates the split socket gets them as one, on stdout.
pub(super) async fn start_attach(cri: &Cri, req: &AttachRequest) -> Result<Session> {
    let m = cri.manager().await?;
    let id = &req.container_id;
    let split = match req.tty {
        true => None,
        false => m.attach_container_split(id).await.ok(),
    };
    let (output, input) = match split {
        Some(fd) => {
            let (out, input) = unix_halves(fd.into())?;
            (Output::framed(out, req.stdout, req.stderr), input)
        }
        None => {
            let fd: OwnedFd = m.attach_container(id).await?.into();
            let (out, input) = unix_halves(fd)?;
            let channel = if req.stdout { STDOUT } else { STDERR };
            (Output::plain(out, channel), input)
        }
    };
    Ok(Session {
        container: id.clone(),
        outputs: vec![output],
        input: req.stdin.then_some(input),
        terminal: req.tty.then(String::new),
        exec: None,
    })
}

/// Copies one output to its channels until its end.
async fn pump(mut o: Output, tx: mpsc::Sender<Message>) {
    let mut buf = vec![0u8; 32 << 10];
    while let Some((channel, n)) = o.read(&mut buf).await {
        if tx.send(frame(channel, &buf[..n])).await.is_err() {
            return;
        }
    }
}

/// Runs a session until the process ends (status on the error channel) or
/// the client goes (the exec killed).
async fn relay(cri: &Cri, ws: Ws, s: Session, v5: bool) {
    let (mut sink, mut src) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(16);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
        let _ = sink.send(super::normal_close()).await;
        let _ = sink.close().await;
    });
    // Outputs are read by tasks of their own: a stdin write that blocks
    // (the process not reading) never stops its output from flowing.
    let pumps: Vec<_> = s
        .outputs
        .into_iter()
        .map(|o| tokio::spawn(pump(o, tx.clone())))
        .collect();
    let aborts: Vec<_> = pumps.iter().map(|p| p.abort_handle()).collect();
    let m = match cri.manager().await {
        Ok(m) => m,
        Err(e) => {
            let _ = tx
                .send(frame(ERROR, status_json(Err(e.to_string())).as_bytes()))
                .await;
            return;
        }
    };
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
    let mut input = s.input;
    loop {
        tokio::select! {
            code = &mut finish => {
                let _ = tx.send(frame(ERROR, status_json(code).as_bytes())).await;
                break;
            }
            msg = src.next() => match msg {
                Some(Ok(Message::Binary(b))) if !b.is_empty() => match b[0] {
                    STDIN => {
                        if let Some(i) = input.as_mut() {
                            if i.write_all(&b[1..]).await.is_err() {
                                input = None;
                            }
                        }
                    }
                    RESIZE => {
                        if let (Some(e), Some((rows, cols))) = (&s.terminal, size(&b[1..])) {
                            let _ = m.resize_terminal(&s.container, e, rows, cols).await;
                        }
                    }
                    CLOSE if v5 && b.get(1) == Some(&STDIN) => {
                        if let Some(mut i) = input.take() {
                            let _ = i.shutdown().await;
                        }
                    }
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
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
    drop(tx);
    let _ = writer.await;
}

/// A resize message: `{"Width":cols,"Height":rows}` → (rows, cols).
pub(super) fn size(json: &[u8]) -> Option<(u16, u16)> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    let w = u16::try_from(v["Width"].as_u64()?).ok()?;
    let h = u16::try_from(v["Height"].as_u64()?).ok()?;
    Some((h, w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_carries_the_exit_code_as_the_kubelet_does() {
        assert_eq!(status_json(Ok(0)), r#"{"metadata":{},"status":"Success"}"#);
        let v: serde_json::Value = serde_json::from_str(&status_json(Ok(3))).unwrap();
        assert_eq!(v["status"], "Failure");
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(v["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(v["details"]["causes"][0]["message"], "3");
    }

    #[test]
    fn resize_messages() {
        assert_eq!(size(br#"{"Width":100,"Height":30}"#), Some((30, 100)));
        assert_eq!(size(br#"{"Width":-1,"Height":30}"#), None);
        assert_eq!(size(b"junk"), None);
    }
}
