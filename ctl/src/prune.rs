//! Clean-up and disk use: `container prune`, `system df`, `system prune`,
//! and `rename` (refused: see why below).

use std::collections::BTreeSet;
use std::io::{BufRead, Write};

use serde_json::json;

use crate::record::{self, Record};
use crate::{connect, image, manager, Failed, Result};
use berth_client::ImagesProxyBlocking;

/// podman's confirmation: y or yes goes on, anything else stops.
pub fn confirm(what: &str) -> bool {
    eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Removes every stopped container; prints each id. 125 if one failed.
fn prune_containers(m: &berth_client::ManagerProxyBlocking) -> Result<u8> {
    let mut code = 0;
    for (id, status, _) in m.list_containers()? {
        if status != "stopped" {
            continue;
        }
        match m.delete_container(&id, false) {
            Ok(()) => println!("{id}"),
            Err(e) => {
                eprintln!("berthctl: {id}: {}", berth_client::describe(&e));
                code = crate::EXIT_FAILED;
            }
        }
    }
    Ok(code)
}

pub fn container_prune(force: bool) -> Result<u8> {
    if !force && !confirm("all stopped containers") {
        return Ok(0);
    }
    let m = manager()?;
    prune_containers(&m)
}

pub fn system_prune(force: bool) -> Result<u8> {
    if !force && !confirm("all stopped containers and all image data no image name uses") {
        return Ok(0);
    }
    let (conn, m) = connect()?;
    println!("Deleted Containers");
    let code = prune_containers(&m)?;
    let (blobs, bytes, snaps) = ImagesProxyBlocking::new(&conn)?.prune_images()?;
    println!(
        "Deleted Images\nremoved {blobs} blobs, {snaps} snapshots\nTotal reclaimed space: {}",
        image::human(bytes)
    );
    Ok(code)
}

/// `system df`: TYPE, TOTAL, ACTIVE, SIZE, RECLAIMABLE. Image sizes are
/// berthd's per image (layers two images share count twice, as in
/// ListImages); containers write into their bundles, which berthd does not
/// measure, so their size is unknown.
pub fn system_df(format: Option<&str>) -> Result<u8> {
    let (conn, m) = connect()?;
    let containers: Vec<Record> = record::all(&conn, &m)?;
    let images = ImagesProxyBlocking::new(&conn)?.list_images()?;
    let used: BTreeSet<&str> = containers.iter().map(|c| c.image.as_str()).collect();
    let (mut size, mut unused_size, mut active_images) = (0u64, 0u64, 0usize);
    for (name, _, _, bytes, _) in &images {
        size += bytes;
        if used.contains(name.as_str()) {
            active_images += 1;
        } else {
            unused_size += bytes;
        }
    }
    let running = containers
        .iter()
        .filter(|c| c.status == "running" || c.status == "paused")
        .count();
    let rows = [
        json!({"Type": "Images", "Total": images.len(), "Active": active_images,
               "Size": image::human(size), "Reclaimable": image::human(unused_size),
               "RawSize": size, "RawReclaimable": unused_size}),
        json!({"Type": "Containers", "Total": containers.len(), "Active": running,
               "Size": "unknown", "Reclaimable": "unknown"}),
        json!({"Type": "Local Volumes", "Total": 0, "Active": 0, "Size": "0B", "Reclaimable": "0B"}),
    ];
    let table = "table {{.Type}}\t{{.Total}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}";
    crate::format::print(&rows, format, table, |_| None)?;
    Ok(0)
}

/// berth's container id is also its scope unit (berth-<id>.scope), its
/// D-Bus object path, its journal field and its state directory: a rename
/// would change all of them under a running container and the clients
/// that hold its path. berthd does not do it; say so rather than pretend.
pub fn rename(id: &str, new_name: &str) -> Result<u8> {
    let m = manager()?;
    m.get_container(id)?;
    Err(Failed::new(format!(
        "cannot rename {id} to {new_name}: a berth container's id is its name, its systemd \
         unit (berth-{id}.scope), its D-Bus object path and its journal field, fixed at \
         create. Create a new container with --name {new_name} instead"
    )))
}
