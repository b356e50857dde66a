//! berth-cri's streaming server end to end, in a box: Exec, Attach and
//! PortForward URLs used by a WebSocket client (tokio-tungstenite) the way
//! client-go's remotecommand / portforward use them. Asserts: stdin in,
//! stdout and stderr apart, exit code 3 as the v5 status; a terminal exec
//! sized by a resize message; attach to a running container's output, its
//! stdout and stderr apart (only those asked for); port-forward to busybox
//! httpd inside a pod (no port published), over `portforward.k8s.io` and
//! over SPDY tunnelled in the WebSocket (`SPDY/3.1+portforward.k8s.io`, a
//! SPDY client made of berth-cri's own framing module); a used or unknown
//! token refused; a client gone mid-exec leaves no process. With
//! BERTH_CRICTL: crictl exec (-i, -it on a pty), attach and port-forward,
//! each over both transports.
//! (Expiry after a minute is unit-tested in cri/src/stream/tokens.rs.)

mod common;
#[allow(unused_imports)]
use common::*;

// Shared with tests/cri.rs, which uses all of it.
#[allow(dead_code)]
mod cri_client;
use cri_client::*;

// crictl against the same pod (with BERTH_CRICTL), and the TLS server.
#[path = "cri_stream/crictl.rs"]
mod crictl;
#[path = "cri_stream/tls.rs"]
mod tls;

use std::collections::HashMap;
use std::time::Duration;

use berth_cri::api::*;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TcpStream>;

#[test]
fn cri_streaming_exec_attach_port_forward() {
    let Some(b) = cri_box("cri_streaming_exec_attach_port_forward") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(scenario(&b));
}

/// A WebSocket to `url` (in the box's network namespace) offering `proto`.
async fn ws(
    b: &berth_box::SystemdBox,
    url: &str,
    proto: &str,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    // As client-go: the URL's http becomes ws for the upgrade.
    let mut req = url.replacen("http://", "ws://", 1).into_client_request()?;
    req.headers_mut()
        .insert("sec-websocket-protocol", proto.parse().unwrap());
    let addr = format!(
        "{}:{}",
        req.uri().host().unwrap(),
        req.uri().port_u16().unwrap()
    );
    let ns = format!("/proc/{}/ns/net", b.init_pid());
    let s = in_netns(&ns, || std::net::TcpStream::connect(&addr)).expect("connect");
    s.set_nonblocking(true).unwrap();
    let s = TcpStream::from_std(s).unwrap();
    let (ws, resp) = tokio_tungstenite::client_async(req, s).await?;
    let agreed = resp.headers().get("sec-websocket-protocol").unwrap();
    assert_eq!(agreed.to_str().unwrap(), proto);
    Ok(ws)
}

fn frame(ch: u8, data: &[u8]) -> Message {
    Message::binary([&[ch][..], data].concat())
}

/// Everything received per channel until the server closes (10 s at most).
async fn drain<S>(ws: &mut WebSocketStream<S>) -> HashMap<u8, Vec<u8>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut got: HashMap<u8, Vec<u8>> = HashMap::new();
    let all = async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Binary(b) = m {
                if let Some((ch, data)) = b.split_first() {
                    got.entry(*ch).or_default().extend_from_slice(data);
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), all)
        .await
        .expect("the session ended");
    got
}

/// What arrives per channel within `span` (the session goes on).
async fn gather(ws: &mut Ws, span: Duration) -> HashMap<u8, Vec<u8>> {
    let mut got: HashMap<u8, Vec<u8>> = HashMap::new();
    let _ = tokio::time::timeout(span, async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Binary(b) = m {
                if let Some((ch, data)) = b.split_first() {
                    got.entry(*ch).or_default().extend_from_slice(data);
                }
            }
        }
    })
    .await;
    got
}

/// Opens the error and data streams (ids 1 and 3) of a connection to port
/// 80 over SPDY in the WebSocket `ws`.
async fn spdy_tunnel_open(ws: &mut Ws) {
    use berth_cri::stream::spdy::{self, HeaderWriter};
    let mut hw = HeaderWriter::default();
    let mut syn = |id: u32, kind: &str| {
        // Stream id, associated id, priority and slot, then the headers.
        let mut p = id.to_be_bytes().to_vec();
        p.extend_from_slice(&[0; 6]);
        let h = [("streamtype", kind), ("port", "80"), ("requestid", "0")];
        p.extend_from_slice(&hw.write(&spdy::encode_headers(&h)));
        Message::binary(spdy::control(spdy::SYN_STREAM, 0, &p))
    };
    let (error, data) = (syn(1, "error"), syn(3, "data"));
    ws.send(error).await.unwrap();
    ws.send(data).await.unwrap();
}

/// One forwarded connection to port 80 over SPDY in the WebSocket `ws`, as
/// client-go's portforward opens it (an error and a data stream sharing a
/// requestid): sends `request`, returns what came back on the data stream
/// until its FIN.
async fn spdy_tunnel_get(mut ws: Ws, request: &str) -> String {
    use berth_cri::stream::spdy::{self, Frame};
    spdy_tunnel_open(&mut ws).await;
    ws.send(Message::binary(spdy::data(3, 0, request.as_bytes())))
        .await
        .unwrap();
    let (mut buf, mut body, mut replies) = (Vec::new(), Vec::new(), 0);
    let read = async {
        while let Some(Ok(m)) = ws.next().await {
            buf.extend_from_slice(&m.into_data());
            while let Some((f, used)) = spdy::parse(&buf).unwrap() {
                buf.drain(..used);
                match f {
                    Frame::Control { kind, .. } if kind == spdy::SYN_REPLY => replies += 1,
                    Frame::Data {
                        stream: 3,
                        flags,
                        data,
                    } => {
                        body.extend_from_slice(&data);
                        if flags & spdy::FLAG_FIN != 0 {
                            return;
                        }
                    }
                    Frame::Data {
                        stream: 1, data, ..
                    } if !data.is_empty() => {
                        panic!("error stream: {}", String::from_utf8_lossy(&data))
                    }
                    _ => {}
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the data stream ended");
    assert_eq!(replies, 2, "both streams answered");
    let _ = ws.close(None).await;
    String::from_utf8_lossy(&body).into_owned()
}

pub(crate) fn text(got: &HashMap<u8, Vec<u8>>, ch: u8) -> String {
    String::from_utf8_lossy(got.get(&ch).map(Vec::as_slice).unwrap_or_default()).into_owned()
}

pub(crate) fn exec_req(id: &str, cmd: &[&str], tty: bool) -> ExecRequest {
    ExecRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin: true,
        stdout: true,
        stderr: !tty,
    }
}

/// A fresh streaming URL for port 80 of `pod`.
async fn port_forward_url(cri: &mut Cri, pod: &str) -> String {
    cri.rt
        .port_forward(PortForwardRequest {
            pod_sandbox_id: pod.to_string(),
            port: vec![80],
        })
        .await
        .unwrap()
        .into_inner()
        .url
}

async fn scenario(b: &berth_box::SystemdBox) {
    let mut cri = connect(b).await;
    let pcfg = pod_config("s1", false);
    let pod = cri.run_pod(&pcfg).await.expect("RunPodSandbox");
    let web = cri
        .create(
            &pod,
            &pcfg,
            container_config("web", &["httpd", "-f", "-p", "80", "-h", "/etc"]),
        )
        .await
        .expect("create web");
    cri.start(&web).await;
    let ticker = cri
        .create(
            &pod,
            &pcfg,
            container_config(
                "tick",
                &[
                    "sh",
                    "-c",
                    "while true; do echo tick; echo tock >&2; sleep 0.1; done",
                ],
            ),
        )
        .await
        .expect("create tick");
    cri.start(&ticker).await;

    // Exec, v5: stdin in (then closed), stdout and stderr apart, code 3.
    let script = "read x; echo out:$x; echo err:$x >&2; exit 3";
    let url = cri
        .rt
        .exec(exec_req(&web, &["sh", "-c", script], false))
        .await
        .unwrap()
        .into_inner()
        .url;
    assert!(url.starts_with("http://127.0.0.1:10010/exec/"), "{url}");
    let mut s = ws(b, &url, "v5.channel.k8s.io").await.unwrap();
    s.send(frame(0, b"hi\n")).await.unwrap();
    s.send(Message::binary(vec![255, 0])).await.unwrap();
    let got = drain(&mut s).await;
    assert_eq!(text(&got, 1), "out:hi\n");
    assert_eq!(text(&got, 2), "err:hi\n");
    let status: serde_json::Value = serde_json::from_str(&text(&got, 3)).unwrap();
    assert_eq!(status["status"], "Failure", "{status}");
    assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");

    // A URL is single-use; an unknown token is refused alike.
    let again = ws(b, &url, "v5.channel.k8s.io").await.unwrap_err();
    assert!(again.to_string().contains("404"), "{again}");
    let bad = url.rsplit_once('/').unwrap().0.to_string() + "/00ff";
    let e = ws(b, &bad, "v5.channel.k8s.io").await.unwrap_err();
    assert!(e.to_string().contains("404"), "{e}");

    // A terminal exec (v4), sized by a resize message before it reads.
    let url = cri
        .rt
        .exec(exec_req(&web, &["sh", "-c", "read x; stty size"], true))
        .await
        .unwrap()
        .into_inner()
        .url;
    let mut s = ws(b, &url, "v4.channel.k8s.io").await.unwrap();
    s.send(frame(4, br#"{"Width":100,"Height":30}"#))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.send(frame(0, b"go\r")).await.unwrap();
    let got = drain(&mut s).await;
    assert!(text(&got, 1).contains("30 100"), "{:?}", text(&got, 1));
    assert_eq!(text(&got, 3), r#"{"metadata":{},"status":"Success"}"#);

    // Attach: the running container's output; leaving detaches only.
    let url = cri
        .rt
        .attach(AttachRequest {
            container_id: ticker.clone(),
            stdin: false,
            tty: false,
            stdout: true,
            stderr: false,
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let mut s = ws(b, &url, "v5.channel.k8s.io").await.unwrap();
    let got = gather(&mut s, Duration::from_millis(600)).await;
    assert!(text(&got, 1).starts_with("tick\ntick\n"), "{got:?}");
    assert!(!got.contains_key(&2), "stderr was not asked for: {got:?}");
    drop(s);
    // Both asked for: each on its own channel (AttachContainerSplit).
    let url = cri
        .rt
        .attach(AttachRequest {
            container_id: ticker.clone(),
            stdin: false,
            tty: false,
            stdout: true,
            stderr: true,
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let mut s = ws(b, &url, "v5.channel.k8s.io").await.unwrap();
    let got = gather(&mut s, Duration::from_millis(600)).await;
    let (out, err) = (text(&got, 1), text(&got, 2));
    assert!(
        out.starts_with("tick\ntick\n") && out.lines().all(|l| l == "tick"),
        "{out:?}"
    );
    assert!(
        err.starts_with("tock\ntock\n") && err.lines().all(|l| l == "tock"),
        "{err:?}"
    );
    drop(s);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let st = cri.status(&ticker).await.unwrap();
    assert_eq!(st.state, ContainerState::ContainerRunning as i32);

    // Port-forward to httpd on the pod's loopback (port 80 is published by
    // nothing here: the dial happens inside the pod's namespace).
    let url = port_forward_url(&mut cri, &pod).await;
    let mut s = ws(b, &format!("{url}?port=80"), "portforward.k8s.io")
        .await
        .unwrap();
    s.send(frame(0, b"GET /hostname HTTP/1.0\r\n\r\n"))
        .await
        .unwrap();
    let got = drain(&mut s).await;
    let data = got.get(&0).cloned().unwrap_or_default();
    assert_eq!(&data[..2], &80u16.to_le_bytes(), "the port comes first");
    let body = String::from_utf8_lossy(&data[2..]);
    assert!(
        body.starts_with("HTTP/1.") && body.trim_end().ends_with("s1"),
        "{body}"
    );

    // The same over SPDY tunnelled in the WebSocket (crictl/client-go's
    // `--transport websocket`): the port in the data stream's headers.
    let url = port_forward_url(&mut cri, &pod).await;
    let s = ws(b, &url, "SPDY/3.1+portforward.k8s.io").await.unwrap();
    let body = spdy_tunnel_get(s, "GET /hostname HTTP/1.0\r\n\r\n").await;
    assert!(
        body.starts_with("HTTP/1.") && body.trim_end().ends_with("s1"),
        "{body}"
    );

    // A tunnelled client that vanishes mid-connection: berth-cri closes
    // the connection it dialed in the pod and the session (its fds back
    // to what they were).
    let fds = || -> usize {
        let n = b.sh_ok("ls /proc/$(systemctl show -P MainPID berth-cri)/fd | wc -l");
        n.trim().parse().unwrap()
    };
    let before = fds();
    let url = port_forward_url(&mut cri, &pod).await;
    let mut s = ws(b, &url, "SPDY/3.1+portforward.k8s.io").await.unwrap();
    spdy_tunnel_open(&mut s).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = fds();
    assert!(
        during >= before + 2,
        "the session and its dial: {before} → {during}"
    );
    drop(s);
    let mut after = during;
    for _ in 0..30 {
        after = fds();
        if after <= before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(after <= before, "left open: {before} → {during} → {after}");

    // A client that goes away mid-exec: the process is killed.
    let url = cri
        .rt
        .exec(exec_req(&web, &["sleep", "1234"], false))
        .await
        .unwrap()
        .into_inner()
        .url;
    let s = ws(b, &url, "v5.channel.k8s.io").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b.sh_ok("pgrep -fx 'sleep 1234' || true").trim().is_empty());
    drop(s);
    let mut left = String::from("?");
    for _ in 0..50 {
        left = b.sh_ok("pgrep -fx 'sleep 1234' || true");
        if left.trim().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(left.trim().is_empty(), "left behind: {left}");

    crictl::crictl(b, &pod, &web, &ticker);
    tls::tls(b, &web).await;
}
