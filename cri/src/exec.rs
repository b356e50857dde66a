//! ExecSync: berthd's ExecContainer with `attach`, the output read from
//! AttachExec, WaitExec for the code.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zbus::zvariant::Value;

use crate::api::*;
use crate::error::{CriError, Result};
use crate::state::Cri;

/// ExecSync: the command's output (stdout and stderr come through berthd's
/// attach stream as one: both land in stdout, see docs/cri.md) and exit
/// code; past `timeout` seconds DeadlineExceeded is returned (the process
/// is left to end: berthd cannot signal one exec yet, see docs/cri.md).
pub async fn exec_sync(cri: &Cri, req: ExecSyncRequest) -> Result<ExecSyncResponse> {
    crate::containers::get(cri, &req.container_id)?;
    if req.cmd.is_empty() {
        return Err(CriError::InvalidArgument("cmd is required".into()));
    }
    let m = cri.manager().await?;
    let process = serde_json::json!({ "args": req.cmd }).to_string();
    let mut o: HashMap<&str, Value> = HashMap::new();
    o.insert("attach", Value::from(true));
    let id = &req.container_id;
    let exec_id = m.exec_container(id, &process, o).await?;
    let fd: OwnedFd = m.attach_exec(id, &exec_id).await?.into();
    // Read asynchronously: on a timeout the future is dropped and the
    // socket closed with it (no thread left blocked on a process that goes
    // on running).
    let done = async {
        let std = std::os::unix::net::UnixStream::from(fd);
        std.set_nonblocking(true)
            .map_err(|e| CriError::Internal(e.to_string()))?;
        let mut s =
            tokio::net::UnixStream::from_std(std).map_err(|e| CriError::Internal(e.to_string()))?;
        let _ = s.shutdown().await;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        let (code, _) = m.wait_exec(id, &exec_id).await?;
        Ok::<_, CriError>((out, code))
    };
    let limit = match req.timeout {
        t if t > 0 => Duration::from_secs(t as u64),
        _ => Duration::from_secs(24 * 3600),
    };
    match tokio::time::timeout(limit, done).await {
        Ok(r) => {
            let (stdout, exit_code) = r?;
            Ok(ExecSyncResponse {
                stdout,
                stderr: Vec::new(),
                exit_code,
            })
        }
        Err(_) => Err(CriError::DeadlineExceeded(format!(
            "command {:?} timed out after {}s",
            req.cmd, req.timeout
        ))),
    }
}
