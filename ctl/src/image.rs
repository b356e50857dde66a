//! `berthctl image …`: the io.berth.Berth1.Images interface.

use std::collections::HashMap;

use zbus::zvariant::Value;

use crate::cli::ImageCmd;
use crate::{Failed, Result};
use berth_client::ImagesProxyBlocking;

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

pub fn human(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    format!("{v:.1} {}", units[i])
}

/// One line per blob on a terminal (redrawn), or a line per finished blob.
fn show_progress(signals: berth_client::PullProgressIterator, reference: &str) {
    use std::io::{IsTerminal, Write};
    let tty = std::io::stderr().is_terminal();
    let mut blobs: Vec<(String, u64, u64)> = Vec::new();
    for s in signals {
        let Ok(a) = s.args() else { continue };
        if a.reference != reference {
            continue;
        }
        let d = short(&a.digest).to_string();
        let finished = a.done >= a.total;
        match blobs.iter_mut().find(|b| b.0 == d) {
            Some(b) => (b.1, b.2) = (a.done, a.total),
            None => blobs.push((d.clone(), a.done, a.total)),
        }
        let mut err = std::io::stderr().lock();
        if tty {
            let line: Vec<String> = blobs
                .iter()
                .map(|(d, done, total)| format!("{d} {}/{}", human(*done), human(*total)))
                .collect();
            let _ = write!(err, "\r\x1b[K{}", line.join("  "));
        } else if finished {
            let _ = writeln!(err, "{d}: {} done", human(a.total));
        }
        let _ = err.flush();
    }
}

pub fn run(cmd: ImageCmd) -> Result<u8> {
    let conn = zbus::blocking::Connection::system()?;
    let images = ImagesProxyBlocking::new(&conn)?;
    match cmd {
        ImageCmd::Import { path, name } => {
            let abs = std::fs::canonicalize(&path)
                .map_err(|e| Failed::new(format!("{}: {e}", path.display())))?;
            let mut o: HashMap<&str, Value> = HashMap::new();
            if let Some(n) = name {
                o.insert("name", Value::from(n));
            }
            for n in images.import_image(&abs.to_string_lossy(), o)? {
                println!("{n}");
            }
        }
        ImageCmd::Pull {
            reference,
            creds,
            plain_http,
        } => {
            let mut o: HashMap<&str, Value> = HashMap::new();
            if let Some(c) = creds {
                let (u, p) = c
                    .split_once(':')
                    .ok_or_else(|| Failed::new("--creds must be USER:PASSWORD"))?;
                o.insert("username", Value::from(u.to_string()));
                o.insert("password", Value::from(p.to_string()));
            }
            if plain_http {
                o.insert("plain_http", Value::from(true));
            }
            // Subscribed before the call, so no progress is missed.
            let progress = images.receive_pull_progress()?;
            let watched = reference.clone();
            std::thread::spawn(move || show_progress(progress, &watched));
            let name = images.pull_image(&reference, o)?;
            eprintln!();
            println!("{name}");
        }
        ImageCmd::Ls { json } => {
            let list = images.list_images()?;
            if json {
                let v: Vec<_> = list
                    .iter()
                    .map(|(n, id, m, size, at)| {
                        serde_json::json!({"Name": n, "Id": id, "Manifest": m, "Size": size, "ImportedAt": at})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                println!("{:<50} {:<14} {:>10}", "NAME", "IMAGE ID", "SIZE");
                for (n, id, _, size, _) in list {
                    println!("{n:<50} {:<14} {:>10}", short(&id), human(size));
                }
            }
        }
        ImageCmd::Inspect { names } => {
            let mut out = Vec::new();
            for n in names {
                let text = images.inspect_image(&n)?;
                out.push(serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default());
            }
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        }
        ImageCmd::Tag { name, new_name } => println!("{}", images.tag_image(&name, &new_name)?),
        ImageCmd::Rm { names } => {
            for n in names {
                images.remove_image(&n)?;
                println!("{n}");
            }
        }
        ImageCmd::Prune => {
            let (blobs, bytes, snaps) = images.prune_images()?;
            println!(
                "removed {blobs} blobs ({}), {snaps} snapshots",
                human(bytes)
            );
        }
        ImageCmd::Save { output, names } => {
            std::fs::create_dir_all(&output)
                .map_err(|e| Failed::new(format!("{}: {e}", output.display())))?;
            let abs = std::fs::canonicalize(&output)
                .map_err(|e| Failed::new(format!("{}: {e}", output.display())))?;
            images.save_images(names, &abs.to_string_lossy())?;
        }
    }
    Ok(0)
}
