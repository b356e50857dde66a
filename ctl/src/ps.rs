//! `berthctl ps`: podman's columns (CONTAINER ID, IMAGE, COMMAND, CREATED,
//! STATUS, PORTS, NAMES), -a, -q, --filter and --format.

use std::collections::BTreeMap;

use crate::cli::PsOpts;
use crate::record::{self, Record};
use crate::{connect, format, Failed, Result};

const TABLE: &str =
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.CreatedAt}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

/// podman's headers for the fields whose upper-cased name is not it.
pub fn header(field: &str) -> Option<&'static str> {
    match field {
        "ID" | "Id" => Some("CONTAINER ID"),
        "CreatedAt" | "Created" | "RunningFor" => Some("CREATED"),
        _ => None,
    }
}

/// --filter KEY=VALUE, grouped by key: values of one key OR, keys AND.
pub struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    pub fn parse(list: &[String]) -> Result<Filters> {
        let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in list {
            let (k, v) = f
                .split_once('=')
                .ok_or_else(|| Failed::new(format!("filter {f:?} is not KEY=VALUE")))?;
            if !["status", "name", "label", "ancestor", "id"].contains(&k) {
                return Err(Failed::new(format!(
                    "unknown filter {k:?} (known: status, name, label, ancestor, id)"
                )));
            }
            if k == "status" && !["created", "running", "paused", "exited", "stopped"].contains(&v)
            {
                return Err(Failed::new(format!(
                    "status filter {v:?}: created, running, paused or exited"
                )));
            }
            by_key.entry(k.to_string()).or_default().push(v.to_string());
        }
        Ok(Filters(by_key))
    }

    /// A status filter names what to show: stopped ones too, without -a.
    pub fn names_status(&self) -> bool {
        self.0.contains_key("status")
    }

    pub fn matches(&self, r: &Record) -> bool {
        self.0.iter().all(|(k, values)| {
            values.iter().any(|v| match k.as_str() {
                "status" => r.state() == v || r.status == *v,
                // podman matches names by regular expression; a substring
                // covers its common use without a regex engine.
                "name" => r.id.contains(v.as_str()),
                "id" => r.id.starts_with(v.as_str()),
                "label" => match v.split_once('=') {
                    Some((lk, lv)) => r.labels.get(lk).is_some_and(|x| x == lv),
                    None => r.labels.contains_key(v),
                },
                "ancestor" => ancestor(r.image_or_bundle(), v),
                _ => false,
            })
        })
    }
}

/// `ancestor=busybox` matches docker.io/library/busybox:latest, as podman's
/// short names do; a bundle container matches its bundle path.
fn ancestor(image: &str, want: &str) -> bool {
    let tagged = |s: &str| {
        let last = s.rsplit('/').next().unwrap_or(s);
        if last.contains(':') || last.contains('@') {
            s.to_string()
        } else {
            format!("{s}:latest")
        }
    };
    let (image, want) = (tagged(image), tagged(want));
    image == want || image.ends_with(&format!("/{want}"))
}

pub fn ps(opts: &PsOpts) -> Result<u8> {
    let filters = Filters::parse(&opts.filters)?;
    let (conn, m) = connect()?;
    let rows: Vec<Record> = record::all(&conn, &m)?
        .into_iter()
        .filter(|r| opts.all || filters.names_status() || r.status != "stopped")
        .filter(|r| filters.matches(r))
        .collect();
    if opts.quiet {
        for r in rows {
            println!("{}", r.id);
        }
        return Ok(0);
    }
    let json: Vec<_> = rows.iter().map(|r| r.ps_row(opts.no_trunc)).collect();
    let fmt = if opts.json {
        Some("json")
    } else {
        opts.format.as_deref()
    };
    format::print(&json, fmt, TABLE, header)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, status: &str, image: &str, labels: &[(&str, &str)]) -> Record {
        Record {
            id: id.into(),
            status: status.into(),
            image: image.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    fn f(list: &[&str]) -> Filters {
        Filters::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn filters_as_podman() {
        let web = rec(
            "web",
            "running",
            "docker.io/library/busybox:latest",
            &[("app", "demo")],
        );
        let old = rec("old", "stopped", "", &[]);
        assert!(f(&["status=running"]).matches(&web));
        assert!(f(&["status=exited"]).matches(&old));
        assert!(!f(&["status=exited"]).matches(&web));
        assert!(f(&["status=exited", "status=running"]).matches(&web));
        assert!(f(&["name=we"]).matches(&web));
        assert!(!f(&["name=we", "status=exited"]).matches(&web));
        assert!(f(&["label=app"]).matches(&web));
        assert!(f(&["label=app=demo"]).matches(&web));
        assert!(!f(&["label=app=other"]).matches(&web));
        assert!(f(&["ancestor=busybox"]).matches(&web));
        assert!(f(&["ancestor=library/busybox:latest"]).matches(&web));
        assert!(!f(&["ancestor=alpine"]).matches(&web));
        assert!(Filters::parse(&["colour=red".into()]).is_err());
        assert!(Filters::parse(&["status=sleepy".into()]).is_err());
    }

    #[test]
    fn status_words() {
        let mut r = rec("x", "stopped", "", &[]);
        r.exit_code = 3;
        r.exited_at = crate::when::now_us() - 2_000_000;
        assert_eq!(r.status_text(), "Exited (3) 2 seconds ago");
        r.status = "running".into();
        r.started_at = crate::when::now_us() - 180_000_000;
        assert_eq!(r.status_text(), "Up 3 minutes");
        r.status = "created".into();
        assert_eq!(r.status_text(), "Created");
        r.status = "paused".into();
        assert_eq!(r.status_text(), "Paused");
    }
}
