//! CreateContainer's lifecycle options: `restart` (s: no, on-failure[:N],
//! always, unless-stopped) and the health check, `health_cmd` (as),
//! `health_interval`, `health_start_period`, `health_timeout` (t, µs),
//! `health_retries` (u) and `health_on_failure` (s: none, kill, restart,
//! stop). podman's flags, as berthd keeps them: restart.rs and health.rs.

use zbus::zvariant::OwnedValue;

use super::{check_list, typed, OptionError};
use crate::daemon::brief;
use crate::health::{HealthConfig, OnFailure};
use crate::restart::RestartPolicy;

pub const KEYS: &[&str] = &[
    "restart",
    "health_cmd",
    "health_interval",
    "health_retries",
    "health_start_period",
    "health_timeout",
    "health_on_failure",
];

/// podman's defaults: 30 s interval and timeout, 3 retries, no start period.
const DEFAULT_INTERVAL_US: u64 = 30_000_000;
const DEFAULT_TIMEOUT_US: u64 = 30_000_000;
const DEFAULT_RETRIES: u32 = 3;
/// A timer firing more often than this would be a busy loop of execs.
pub const MIN_INTERVAL_US: u64 = 1_000_000;
/// A day: anything longer is surely a unit mistake (µs read as ms, say).
pub const MAX_DURATION_US: u64 = 86_400_000_000;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LifecycleOptions {
    pub restart: RestartPolicy,
    pub health_cmd: Option<Vec<String>>,
    pub health_interval: Option<u64>,
    pub health_retries: Option<u32>,
    pub health_start_period: Option<u64>,
    pub health_timeout: Option<u64>,
    pub health_on_failure: Option<OnFailure>,
}

impl LifecycleOptions {
    pub fn set(&mut self, key: &str, value: &OwnedValue) -> Result<(), OptionError> {
        let duration = |v: &OwnedValue, min: u64| -> Result<u64, OptionError> {
            let us: u64 = typed(key, v, "t (µs)")?;
            match (min..=MAX_DURATION_US).contains(&us) {
                true => Ok(us),
                false => Err(OptionError::Health(format!(
                    "{key} {us} µs: want {min}..={MAX_DURATION_US} µs"
                ))),
            }
        };
        match key {
            "restart" => {
                let s: String = typed(key, value, "s")?;
                self.restart = RestartPolicy::parse(&s)
                    .ok_or_else(|| OptionError::Restart(brief(&s).into()))?;
            }
            "health_cmd" => {
                let cmd: Vec<String> = typed(key, value, "as")?;
                check_list(key, &cmd)?;
                if cmd.first().is_none_or(|c| c.is_empty()) {
                    return Err(OptionError::Health("health_cmd must not be empty".into()));
                }
                self.health_cmd = Some(cmd);
            }
            "health_interval" => self.health_interval = Some(duration(value, MIN_INTERVAL_US)?),
            "health_timeout" => self.health_timeout = Some(duration(value, 1)?),
            "health_start_period" => self.health_start_period = Some(duration(value, 0)?),
            "health_retries" => {
                let n: u32 = typed(key, value, "u")?;
                if n == 0 {
                    return Err(OptionError::Health("health_retries must be ≥ 1".into()));
                }
                self.health_retries = Some(n);
            }
            "health_on_failure" => {
                let s: String = typed(key, value, "s")?;
                self.health_on_failure = Some(OnFailure::parse(&s).ok_or_else(|| {
                    OptionError::Health(format!(
                        "health_on_failure {:?}: want none, kill, restart or stop",
                        brief(&s)
                    ))
                })?);
            }
            _ => return Err(OptionError::Unknown(brief(key).into())),
        }
        Ok(())
    }

    /// The health check asked for: None without health_cmd, an error if
    /// another health_* option came without it (it would do nothing).
    pub fn health(&self) -> Result<Option<HealthConfig>, OptionError> {
        let Some(cmd) = &self.health_cmd else {
            let stray = self.health_interval.is_some()
                || self.health_retries.is_some()
                || self.health_start_period.is_some()
                || self.health_timeout.is_some()
                || self.health_on_failure.is_some();
            return match stray {
                true => Err(OptionError::Health(
                    "health_* options need health_cmd".into(),
                )),
                false => Ok(None),
            };
        };
        Ok(Some(HealthConfig {
            cmd: cmd.clone(),
            interval_us: self.health_interval.unwrap_or(DEFAULT_INTERVAL_US),
            timeout_us: self.health_timeout.unwrap_or(DEFAULT_TIMEOUT_US),
            start_period_us: self.health_start_period.unwrap_or(0),
            retries: self.health_retries.unwrap_or(DEFAULT_RETRIES),
            on_failure: self.health_on_failure.unwrap_or_default(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::zvariant::Value;

    fn v(x: Value<'_>) -> OwnedValue {
        x.try_to_owned().unwrap()
    }

    #[test]
    fn restart_and_health_parse_and_refuse() {
        let mut o = LifecycleOptions::default();
        o.set("restart", &v(Value::from("on-failure:3"))).unwrap();
        assert_eq!(o.restart, RestartPolicy::OnFailure { max: 3 });
        assert!(o.set("restart", &v(Value::from("sometimes"))).is_err());
        assert!(o.set("restart", &v(Value::from("on-failure:x"))).is_err());
        assert_eq!(o.health().unwrap(), None);
        o.set("health_retries", &v(Value::from(2u32))).unwrap();
        assert!(o.health().is_err(), "retries without a command");
        o.set("health_cmd", &v(Value::from(vec!["true"]))).unwrap();
        o.set("health_on_failure", &v(Value::from("kill"))).unwrap();
        let h = o.health().unwrap().unwrap();
        assert_eq!((h.retries, h.on_failure), (2, OnFailure::Kill));
        assert_eq!(h.interval_us, DEFAULT_INTERVAL_US);
        assert!(o.set("health_interval", &v(Value::from(10u64))).is_err());
        assert!(o.set("health_retries", &v(Value::from(0u32))).is_err());
        assert!(o.set("health_on_failure", &v(Value::from("x"))).is_err());
        assert!(o
            .set("health_cmd", &v(Value::from(Vec::<String>::new())))
            .is_err());
    }
}
