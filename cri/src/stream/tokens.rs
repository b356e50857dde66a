//! The streaming server's URLs: one random token per Exec/Attach/PortForward
//! call, single-use and short-lived (the kubelet's streaming library: a
//! minute, at most 1000 in flight), so a URL leaked later is worth nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::api::{AttachRequest, ExecRequest, PortForwardRequest};

/// How long a URL can be used (the kubelet's streaming default).
pub const TOKEN_TTL: Duration = Duration::from_secs(60);
/// Requests waiting for their client at once (the kubelet's, too).
pub const MAX_IN_FLIGHT: usize = 1000;

/// What a token stands for.
#[derive(Debug, Clone)]
pub enum Pending {
    Exec(ExecRequest),
    Attach(AttachRequest),
    PortForward(PortForwardRequest),
}

impl Pending {
    /// The URL path's first part.
    pub fn kind(&self) -> &'static str {
        match self {
            Pending::Exec(_) => "exec",
            Pending::Attach(_) => "attach",
            Pending::PortForward(_) => "portforward",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error("{MAX_IN_FLIGHT} streaming requests are waiting for their client already")]
    Full,
    #[error("unknown, expired or already used streaming token")]
    Unknown,
    #[error("no randomness for a token: {0}")]
    Random(String),
}

#[derive(Default)]
pub struct Tokens {
    pending: Mutex<HashMap<String, (Instant, Pending)>>,
}

impl Tokens {
    /// Files `p` under a fresh token (32 random bytes, URL-safe hex).
    pub fn insert(&self, p: Pending) -> Result<String, TokenError> {
        self.insert_at(p, Instant::now())
    }

    fn insert_at(&self, p: Pending, now: Instant) -> Result<String, TokenError> {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut m = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, (at, _)| now.duration_since(*at) < TOKEN_TTL);
        if m.len() >= MAX_IN_FLIGHT {
            return Err(TokenError::Full);
        }
        m.insert(token.clone(), (now, p));
        Ok(token)
    }

    /// Takes the request of `token` for a URL of `kind`: once only, and
    /// only within TOKEN_TTL.
    pub fn take(&self, kind: &str, token: &str) -> Result<Pending, TokenError> {
        self.take_at(kind, token, Instant::now())
    }

    fn take_at(&self, kind: &str, token: &str, now: Instant) -> Result<Pending, TokenError> {
        let mut m = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        // A URL of another kind does not spend the token.
        match m.get(token) {
            Some((_, p)) if p.kind() == kind => {}
            _ => return Err(TokenError::Unknown),
        }
        match m.remove(token) {
            Some((at, p)) if now.duration_since(at) < TOKEN_TTL => Ok(p),
            _ => Err(TokenError::Unknown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec() -> Pending {
        Pending::Exec(ExecRequest::default())
    }

    #[test]
    fn a_token_is_single_use_and_expires() {
        let t = Tokens::default();
        let now = Instant::now();
        let a = t.insert_at(exec(), now).unwrap();
        assert_eq!(a.len(), 64);
        assert_eq!(
            t.take_at("attach", &a, now).unwrap_err(),
            TokenError::Unknown
        );
        assert!(t.take_at("exec", &a, now).is_ok(), "the right kind, once");
        assert_eq!(t.take_at("exec", &a, now).unwrap_err(), TokenError::Unknown);
        let b = t.insert_at(exec(), now).unwrap();
        assert_ne!(a, b);
        let late = now + TOKEN_TTL;
        assert_eq!(
            t.take_at("exec", &b, late).unwrap_err(),
            TokenError::Unknown
        );
        assert_eq!(
            t.take_at("exec", "nope", now).unwrap_err(),
            TokenError::Unknown
        );
    }

    #[test]
    fn the_cache_is_bounded_and_expired_ones_make_room() {
        let t = Tokens::default();
        let now = Instant::now();
        for _ in 0..MAX_IN_FLIGHT {
            t.insert_at(exec(), now).unwrap();
        }
        assert_eq!(t.insert_at(exec(), now).unwrap_err(), TokenError::Full);
        assert!(t.insert_at(exec(), now + TOKEN_TTL).is_ok());
    }
}
