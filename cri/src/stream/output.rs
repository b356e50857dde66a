//! A session's output as (channel, bytes) chunks, from either kind of source:
//! a plain stream that is all one channel (an exec's stdout or stderr pipe,
//! a terminal), or berthd's split attach (AttachContainerSplit: the
//! container's output framed `[1 stdout | 2 stderr][length: u32 BE][bytes]`,
//! docs/shim.md), of which only the streams the client asked for are kept.

use tokio::io::AsyncReadExt;

use super::remote::{Reader, STDERR, STDOUT};

/// The largest frame we accept from the monitor (it sends ≤ 64 KiB).
const MAX_FRAME: usize = 1 << 20;

pub(super) struct Output {
    r: Reader,
    kind: Kind,
}

enum Kind {
    Plain(u8),
    Framed {
        stdout: bool,
        stderr: bool,
        /// The current frame's channel and bytes still to read of it.
        channel: u8,
        left: usize,
    },
}

impl Output {
    /// `r` is all `channel`.
    pub fn plain(r: Reader, channel: u8) -> Self {
        Output {
            r,
            kind: Kind::Plain(channel),
        }
    }

    /// `r` is a split attach; keep the streams the client asked for.
    pub fn framed(r: Reader, stdout: bool, stderr: bool) -> Self {
        Output {
            r,
            kind: Kind::Framed {
                stdout,
                stderr,
                channel: 0,
                left: 0,
            },
        }
    }

    /// The channels this output can carry.
    pub fn channels(&self) -> Vec<u8> {
        match &self.kind {
            Kind::Plain(c) => vec![*c],
            Kind::Framed { stdout, stderr, .. } => [(*stdout, STDOUT), (*stderr, STDERR)]
                .into_iter()
                .filter_map(|(want, c)| want.then_some(c))
                .collect(),
        }
    }

    /// The next chunk: its channel and length (≤ buf.len()) in `buf`; None
    /// at the end (or a broken frame: the monitor is gone or not ours).
    pub async fn read(&mut self, buf: &mut [u8]) -> Option<(u8, usize)> {
        match &mut self.kind {
            Kind::Plain(c) => match self.r.read(buf).await {
                Ok(n @ 1..) => Some((*c, n)),
                _ => None,
            },
            Kind::Framed {
                stdout,
                stderr,
                channel,
                left,
            } => loop {
                if *left == 0 {
                    let mut head = [0u8; 5];
                    self.r.read_exact(&mut head).await.ok()?;
                    *channel = head[0];
                    *left = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
                    if *left > MAX_FRAME {
                        return None;
                    }
                    continue;
                }
                let want = (*left).min(buf.len());
                let n = match self.r.read(&mut buf[..want]).await {
                    Ok(n @ 1..) => n,
                    _ => return None,
                };
                *left -= n;
                let kept = match *channel {
                    STDOUT => *stdout,
                    STDERR => *stderr,
                    _ => false,
                };
                if kept {
                    return Some((*channel, n));
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_split_by_stream_and_unwanted_ones_dropped() {
        let bytes: &[u8] = &[2, 0, 0, 0, 3, b'e', b'r', b'r', 1, 0, 0, 0, 2, b'o', b'k'];
        let mut both = Output::framed(Box::new(bytes), true, true);
        let mut buf = [0u8; 2];
        let mut got = Vec::new();
        while let Some((c, n)) = both.read(&mut buf).await {
            got.push((c, buf[..n].to_vec()));
        }
        assert_eq!(
            got,
            [
                (STDERR, b"er".to_vec()),
                (STDERR, b"r".to_vec()),
                (STDOUT, b"ok".to_vec())
            ]
        );
        let mut out_only = Output::framed(Box::new(bytes), true, false);
        assert_eq!(out_only.channels(), [STDOUT]);
        let mut buf = [0u8; 16];
        assert_eq!(out_only.read(&mut buf).await, Some((STDOUT, 2)));
        assert_eq!(out_only.read(&mut buf).await, None);
    }
}
