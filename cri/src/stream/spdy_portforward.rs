//! PortForward over SPDY (`portforward.k8s.io`): per forwarded connection
//! the client opens an error stream and a data stream sharing a
//! `requestid`, the data stream naming the `port`. We dial the port inside
//! the pod's network namespace (portforward.rs's dial) when the data stream
//! opens, relay both ways, and end both streams (FIN) when the connection
//! ends; a failed dial is reported on the error stream.

use std::collections::HashMap;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;

use super::spdy::{self, Frame, HeaderWriter};
use super::spdy_session::{reply, Incoming, Outgoing};
use crate::api::PortForwardRequest;
use crate::state::Cri;

pub(super) async fn serve(
    cri: &Cri,
    mut inc: Incoming,
    out: &Outgoing,
    mut hw: HeaderWriter,
    req: PortForwardRequest,
) {
    let netns = match crate::pods::get(cri, &req.pod_sandbox_id).await {
        Ok(pod) => (!pod.host_network).then(|| cri.sandboxes.ns_path(&pod.id, "net")),
        Err(_) => return,
    };
    // requestid → error stream; data stream → the connection's write half.
    let mut errors: HashMap<String, u32> = HashMap::new();
    let mut conns: HashMap<u32, OwnedWriteHalf> = HashMap::new();
    let mut readers = Vec::new();
    while let Some(f) = inc.next().await {
        match f {
            Frame::Control {
                kind: spdy::SYN_STREAM,
                payload,
                ..
            } => {
                let Some((id, h)) = inc.syn_stream(&payload) else {
                    break;
                };
                out.send(reply(&mut hw, id)).await;
                let rid = h.get("requestid").cloned().unwrap_or_default();
                match h.get("streamtype").map(String::as_str) {
                    Some("error") => {
                        errors.insert(rid, id);
                    }
                    Some("data") => {
                        let err_id = errors.get(&rid).copied();
                        let port = h.get("port").and_then(|p| p.parse::<u16>().ok());
                        let dialed = match port {
                            Some(p) if p > 0 => super::portforward::dial(netns.clone(), p).await,
                            _ => Err(crate::error::CriError::InvalidArgument("bad port".into())),
                        };
                        match dialed {
                            Ok(conn) => {
                                let (mut r, w) = conn.into_split();
                                conns.insert(id, w);
                                let out = out.clone();
                                readers.push(tokio::spawn(async move {
                                    let mut buf = vec![0u8; spdy::MAX_DATA];
                                    while let Ok(n @ 1..) = r.read(&mut buf).await {
                                        if !out.data(id, &buf[..n], false).await {
                                            return;
                                        }
                                    }
                                    out.data(id, &[], true).await;
                                    if let Some(e) = err_id {
                                        out.data(e, &[], true).await;
                                    }
                                }));
                            }
                            Err(e) => {
                                if let Some(eid) = err_id {
                                    out.data(eid, e.to_string().as_bytes(), true).await;
                                }
                                out.data(id, &[], true).await;
                            }
                        }
                    }
                    _ => {}
                }
            }
            Frame::Data {
                stream,
                flags,
                data,
            } => {
                if let Some(w) = conns.get_mut(&stream) {
                    if !data.is_empty() && w.write_all(&data).await.is_err() {
                        conns.remove(&stream);
                    } else if flags & spdy::FLAG_FIN != 0 {
                        let _ = w.shutdown().await;
                    }
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
            } => break,
            Frame::Control {
                kind: spdy::RST_STREAM,
                payload,
                ..
            } => {
                if let Ok(id) = spdy::first_word(&payload) {
                    conns.remove(&id);
                }
            }
            _ => {}
        }
    }
    // The client went: no connection outlives it.
    readers.iter().for_each(|r| r.abort());
}
