//! Times as podman shows and takes them: "3 minutes ago", "Up 2 hours",
//! RFC 3339; --since/--until as a duration, Unix seconds or RFC 3339.

use crate::{Failed, Result};

pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Docker's HumanDuration (podman's words): "Less than a second",
/// "About a minute", "3 hours", "2 weeks".
pub fn human(secs: u64) -> String {
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match secs {
        0 => "Less than a second".into(),
        1..=59 => plural(secs, "second"),
        60..=119 => "About a minute".into(),
        120..=2759 => plural(secs / 60, "minute"),
        2760..=7199 => "About an hour".into(),
        7200..=172_799 => plural(secs / 3600, "hour"),
        172_800..=1_209_599 => plural(secs / 86400, "day"),
        1_209_600..=5_183_999 => plural(secs / 604_800, "week"),
        5_184_000..=63_071_999 => plural(secs / 2_592_000, "month"),
        _ => plural(secs / 31_536_000, "year"),
    }
}

/// How long since `us` (µs since the epoch), in podman's words.
pub fn since(us: u64) -> String {
    human(now_us().saturating_sub(us) / 1_000_000)
}

/// "3 minutes ago"; "" for 0 (never).
pub fn ago(us: u64) -> String {
    if us == 0 {
        return String::new();
    }
    format!("{} ago", since(us))
}

/// Days since 1970-01-01 → (year, month, day): Howard Hinnant's civil_from_days.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// RFC 3339 in UTC ("2024-05-01T10:00:00.123456Z"); "" for 0.
pub fn rfc3339(us: u64) -> String {
    if us == 0 {
        return String::new();
    }
    let secs = (us / 1_000_000) as i64;
    let (y, mo, d) = civil(secs.div_euclid(86400));
    let s = secs.rem_euclid(86400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        us % 1_000_000
    )
}

/// Go's duration syntax ("90s", "10m", "1h30m", "1.5h") in µs.
fn duration_us(s: &str) -> Option<u64> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push('s');
            chars.next();
        }
        let factor = match unit.as_str() {
            "h" => 3_600e6,
            "m" => 60e6,
            "s" => 1e6,
            "ms" => 1e3,
            _ => return None,
        };
        total += num.parse::<f64>().ok()? * factor;
        num.clear();
        any = true;
    }
    (any && num.is_empty()).then_some(total as u64)
}

/// "2024-05-01T10:00:00Z", "…+02:00", "…T10:00:00" (UTC), "2024-05-01".
fn rfc3339_us(s: &str) -> Option<u64> {
    let (date, time) = s.split_once('T').unwrap_or((s, "00:00:00Z"));
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, mo, day) = (d.next()??, d.next()?? as u32, d.next()?? as u32);
    let (clock, offset) = match time.find(['Z', 'z', '+', '-']) {
        Some(i) => (&time[..i], &time[i..]),
        None => (time, "Z"),
    };
    let mut c = clock.splitn(3, ':');
    let (h, mi) = (
        c.next()?.parse::<i64>().ok()?,
        c.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = c.next().unwrap_or("0").parse().ok()?;
    let off = match offset {
        "Z" | "z" => 0,
        o => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let (oh, om) = o[1..]
                .split_once(':')
                .unwrap_or((&o[1..3.min(o.len())], "0"));
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60)
        }
    };
    let whole = days_from_civil(y, mo, day) * 86400 + h * 3600 + mi * 60 - off;
    let us = whole as f64 * 1e6 + sec * 1e6;
    (us >= 0.0).then_some(us as u64)
}

/// --since / --until: a duration back from now, Unix seconds, or RFC 3339.
pub fn parse_time(s: &str) -> Result<u64> {
    if let Some(d) = duration_us(s) {
        return Ok(now_us().saturating_sub(d));
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Ok((secs * 1e6) as u64);
    }
    rfc3339_us(s).ok_or_else(|| {
        Failed::new(format!(
            "{s:?} is not a time (10m, 1h30m, 1714557600, 2024-05-01T10:00:00Z)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn podman_words() {
        assert_eq!(human(0), "Less than a second");
        assert_eq!(human(1), "1 second");
        assert_eq!(human(59), "59 seconds");
        assert_eq!(human(90), "About a minute");
        assert_eq!(human(180), "3 minutes");
        assert_eq!(human(3 * 3600), "3 hours");
        assert_eq!(human(3 * 86400), "3 days");
    }

    #[test]
    fn dates_both_ways() {
        assert_eq!(
            rfc3339(1_714_557_600_000_000),
            "2024-05-01T10:00:00.000000Z"
        );
        assert_eq!(
            rfc3339_us("2024-05-01T10:00:00Z"),
            Some(1_714_557_600_000_000)
        );
        assert_eq!(
            rfc3339_us("2024-05-01T12:00:00+02:00"),
            Some(1_714_557_600_000_000)
        );
        assert_eq!(rfc3339_us("2024-05-01"), Some(1_714_521_600_000_000));
        assert_eq!(parse_time("1714557600").unwrap(), 1_714_557_600_000_000);
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn durations_count_back_from_now() {
        assert_eq!(duration_us("1h30m"), Some(5_400_000_000));
        assert_eq!(duration_us("1.5s"), Some(1_500_000));
        assert_eq!(duration_us("250ms"), Some(250_000));
        assert_eq!(duration_us("10"), None);
        let t = parse_time("10m").unwrap();
        assert!(now_us() - t >= 600_000_000);
    }
}
