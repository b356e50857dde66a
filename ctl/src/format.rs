//! `--format` as podman takes it: `json`, `table`, or a Go-template subset
//! over the JSON of each row: `{{.Field}}`, `{{.State.Pid}}`, `{{.Labels.app}}`,
//! `{{json .Labels}}`, `{{upper .Status}}`, `{{lower …}}`, and a leading
//! `table ` for a header row. Our own few lines rather than a crate: gtmpl
//! (the only Go-template engine in Rust) is unmaintained, and Jinja- or
//! Handlebars-style engines read `{{.Names}}` differently.

use serde_json::Value as Json;

use crate::{Failed, Result};

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    /// A function (or "" for none) applied to the value at a path.
    Field {
        func: String,
        path: Vec<String>,
    },
}

/// A parsed `--format`: whether it asked for a header, and its parts.
#[derive(Debug, Clone)]
pub struct Template {
    pub table: bool,
    parts: Vec<Part>,
}

const FUNCS: [&str; 3] = ["json", "upper", "lower"];

impl Template {
    pub fn parse(text: &str) -> Result<Template> {
        // podman's habit: a literal \t or \n in the shell argument is a tab
        // or a newline.
        let text = text.replace("\\t", "\t").replace("\\n", "\n");
        let (table, mut rest) = match text.strip_prefix("table") {
            Some(r) if r.is_empty() || r.starts_with([' ', '\t']) => (true, r.trim_start()),
            _ => (false, text.as_str()),
        };
        let mut parts = Vec::new();
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let end = rest[start..]
                .find("}}")
                .ok_or_else(|| Failed::new(format!("template {text:?}: unclosed {{{{")))?;
            parts.push(action(rest[start + 2..start + end].trim(), &text)?);
            rest = &rest[start + end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { table, parts })
    }

    /// The header row: each field's last name upper-cased, or the caller's
    /// name for it (podman's "CONTAINER ID" for .ID).
    pub fn header(&self, name: impl Fn(&str) -> Option<&'static str>) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.clone(),
                Part::Field { path, .. } => {
                    let last = path.last().map(String::as_str).unwrap_or("");
                    name(last).map_or_else(|| last.to_uppercase(), String::from)
                }
            })
            .collect()
    }

    pub fn render(&self, v: &Json) -> Result<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field { func, path } => {
                    let found = lookup(v, path)?;
                    let s = match func.as_str() {
                        "json" => found.to_string(),
                        "upper" => plain(&found).to_uppercase(),
                        "lower" => plain(&found).to_lowercase(),
                        _ => plain(&found),
                    };
                    out.push_str(&s);
                }
            }
        }
        Ok(out)
    }
}

fn action(inner: &str, text: &str) -> Result<Part> {
    let words: Vec<&str> = inner.split_whitespace().collect();
    let (func, field) = match words.as_slice() {
        [f] => ("", *f),
        [func, f] if FUNCS.contains(func) => (*func, *f),
        _ => {
            return Err(Failed::new(format!(
                "template {text:?}: cannot read {{{{{inner}}}}} (known: {{{{.Field}}}}, \
                 {{{{.A.B}}}}, {{{{json .X}}}}, {{{{upper .X}}}}, {{{{lower .X}}}})"
            )))
        }
    };
    let rest = field.strip_prefix('.').ok_or_else(|| {
        Failed::new(format!(
            "template {text:?}: {field:?} is not a field (write .{field})"
        ))
    })?;
    let path = rest
        .split('.')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    Ok(Part::Field {
        func: func.to_string(),
        path,
    })
}

/// The value at `path`. A name the row does not have is an error (a typo
/// in --format); a key a map (Labels) lacks is Go's "<no value>".
fn lookup(v: &Json, path: &[String]) -> Result<Json> {
    let mut cur = v;
    for (depth, key) in path.iter().enumerate() {
        match cur.get(key) {
            Some(next) => cur = next,
            None if depth == 0 => {
                let known: Vec<&String> = v
                    .as_object()
                    .map(|o| o.keys().collect())
                    .unwrap_or_default();
                return Err(Failed::new(format!(
                    "template: no field {key:?} (fields: {})",
                    known
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            None => return Ok(Json::String("<no value>".into())),
        }
    }
    Ok(cur.clone())
}

/// A value as Go's text/template prints it.
fn plain(v: &Json) -> String {
    match v {
        Json::Null => "<no value>".into(),
        Json::String(s) => s.clone(),
        Json::Array(a) => format!("[{}]", a.iter().map(plain).collect::<Vec<_>>().join(" ")),
        Json::Object(o) => format!(
            "map[{}]",
            o.iter()
                .map(|(k, v)| format!("{k}:{}", plain(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        other => other.to_string(),
    }
}

/// Rows as columns two spaces apart (podman's tabwriter), cells split at
/// tabs; the last column is not padded.
pub fn columns(rows: &[String]) -> String {
    let cells: Vec<Vec<&str>> = rows.iter().map(|r| r.split('\t').collect()).collect();
    let n = cells.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            cells
                .iter()
                .filter_map(|r| r.get(i).map(|c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &cells {
        let mut line = String::new();
        for (i, c) in row.iter().enumerate() {
            line.push_str(c);
            if i + 1 < row.len() {
                let pad = widths[i] - c.chars().count() + 2;
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Prints `rows` as --format asks: "json" (an array), a template (one line
/// each, a header first for `table …`), or `default` (a `table …` template).
pub fn print(
    rows: &[Json],
    format: Option<&str>,
    default: &str,
    names: impl Fn(&str) -> Option<&'static str>,
) -> Result<()> {
    let text = match format {
        Some("json") => {
            println!("{}", serde_json::to_string_pretty(rows).unwrap_or_default());
            return Ok(());
        }
        Some("table") | None => default,
        Some(t) => t,
    };
    let t = Template::parse(text)?;
    let mut lines = Vec::with_capacity(rows.len() + 1);
    if t.table {
        lines.push(t.header(names));
    }
    for r in rows {
        lines.push(t.render(r)?);
    }
    if t.table {
        print!("{}", columns(&lines));
    } else {
        for l in lines {
            println!("{l}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_paths_and_functions() {
        let v = json!({"Names": "web", "Status": "Up 3 minutes", "State": {"Pid": 42},
                       "Labels": {"app": "demo"}});
        let r = |t: &str| Template::parse(t).unwrap().render(&v).unwrap();
        assert_eq!(r("{{.Names}} {{.Status}}"), "web Up 3 minutes");
        assert_eq!(r("{{.State.Pid}}"), "42");
        assert_eq!(r("{{ .Labels.app }}"), "demo");
        assert_eq!(r("{{.Labels.none}}"), "<no value>");
        assert_eq!(r("{{json .Labels}}"), r#"{"app":"demo"}"#);
        assert_eq!(r("{{upper .Names}}\\t!"), "WEB\t!");
        assert_eq!(r("{{.Labels}}"), "map[app:demo]");
    }

    #[test]
    fn mistakes_are_errors_naming_them() {
        let v = json!({"Names": "web"});
        let e = Template::parse("{{.Nmes}}")
            .unwrap()
            .render(&v)
            .unwrap_err();
        assert!(
            e.msg.contains("Nmes") && e.msg.contains("Names"),
            "{}",
            e.msg
        );
        assert!(Template::parse("{{.Names").is_err());
        assert!(Template::parse("{{Names}}").is_err());
        assert!(Template::parse("{{range .X}}").is_err());
    }

    #[test]
    fn table_header_and_columns() {
        let t = Template::parse("table {{.ID}}\\t{{.Names}}").unwrap();
        assert!(t.table);
        let h = t.header(|n| (n == "ID").then_some("CONTAINER ID"));
        assert_eq!(h, "CONTAINER ID\tNAMES");
        let out = columns(&[h, "a\tb".into()]);
        assert_eq!(out, "CONTAINER ID  NAMES\na             b\n");
    }
}
