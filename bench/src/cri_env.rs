//! The cri scenario's world: one CNI conflist (bridge + host-local +
//! portmap, in the box's own network namespace) that berth-cri and
//! containerd's CRI plugin both read from /etc/cni/net.d; a busybox image
//! under the same name in both stores; a pause image for containerd (berth
//! pins its pod namespaces and needs none); berth-cri socket-activated as
//! the package installs it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use berth_client::ImagesProxyBlocking;

use crate::env::{sh, CONTAINERD_SOCKET, WORK};

pub const BERTH_CRI_SOCKET: &str = "/run/berth/cri.sock";
/// berth-cri's run directory (pinned pod namespaces).
const BERTH_CRI_RUN: &str = "/run/berth/cri";
/// The container's image, in both stores (containerd's CRI reads it as
/// docker.io/local/bb:1, its normalised form).
pub const IMAGE: &str = "local/bb:1";
/// The CNI plugin both runtimes' pods need (Debian's containernetworking-plugins).
pub const CNI_BRIDGE: &str = "/usr/lib/cni/bridge";
/// containerd's sandbox image (config.toml's sandbox_image, fully named).
pub const PAUSE_IMAGE: &str = "docker.io/bench/pause:1";
/// Where containerd's CRI plugin keeps pods, containers and images.
pub const CONTAINERD_NAMESPACE: &str = "k8s.io";

const CONFLIST: &str = r#"{"cniVersion":"1.0.0","name":"benchnet","plugins":[
 {"type":"bridge","bridge":"cni-bench0","isGateway":true,"ipMasq":true,
  "ipam":{"type":"host-local","ranges":[[{"subnet":"10.88.0.0/16"}]],"dataDir":"/run/bench-cni-ipam"}},
 {"type":"portmap","capabilities":{"portMappings":true}}]}"#;

/// Writes a docker-archive image ($1: dir, $2: name, $3: entrypoint as a
/// JSON array) of one layer: the host's static busybox with the applets
/// the bench runs, as tests/common's MAKE_ARCHIVE does.
const MAKE_IMAGE: &str = r#"set -e
dir=$1; name=$2; entry=$3
rm -rf "$dir" && mkdir -p "$dir/layer/bin" "$dir/layer/etc" "$dir/layer/tmp" && cd "$dir"
cp /bin/busybox layer/bin/busybox
for t in sh echo cat sleep true; do ln -s busybox layer/bin/$t; done
printf 'root:x:0:0:root:/root:/bin/sh\n' > layer/etc/passwd
printf 'root:x:0:\n' > layer/etc/group
tar -C layer --owner=0 --group=0 -cf layer.tar .
diff=$(sha256sum layer.tar | cut -d' ' -f1)
cat > config.json <<EOF
{"architecture":"amd64","os":"linux",
 "config":{"Env":["PATH=/bin"],"Entrypoint":$entry,"WorkingDir":"/"},
 "rootfs":{"type":"layers","diff_ids":["sha256:$diff"]}}
EOF
cfg=$(sha256sum config.json | cut -d' ' -f1)
mv config.json $cfg.json
echo "[{\"Config\":\"$cfg.json\",\"RepoTags\":[\"$name\"],\"Layers\":[\"layer.tar\"]}]" > manifest.json
tar -cf image.tar manifest.json $cfg.json layer.tar
"#;

pub fn make_image(dir: &Path, name: &str, entrypoint: &str) -> Result<PathBuf> {
    let d = dir.to_str().context("path is not UTF-8")?;
    sh("sh", &["-c", MAKE_IMAGE, "make-image", d, name, entrypoint])?;
    Ok(dir.join("image.tar"))
}

/// The CNI config both runtimes read (before either runs a pod).
pub fn write_conflist() -> Result<()> {
    std::fs::create_dir_all("/etc/cni/net.d")?;
    std::fs::write("/etc/cni/net.d/10-benchnet.conflist", CONFLIST)
        .context("/etc/cni/net.d/10-benchnet.conflist")
}

/// Imports the busybox image into berthd's store and starts berth-cri's
/// socket (berth-cri from `bin`, its units from the source tree).
pub fn setup_berth(src: &Path, bin: &Path) -> Result<()> {
    let cri = bin.join("berth-cri");
    if !cri.is_file() {
        bail!("{} is not built (cargo build -p berth-cri)", cri.display());
    }
    // Written already when containerd started, but not without containerd.
    write_conflist()?;
    let work = Path::new(WORK);
    let tar = make_image(&work.join("image-bb"), IMAGE, r#"["/bin/sleep"]"#)?;
    let conn = zbus::blocking::Connection::system()?;
    let images = ImagesProxyBlocking::new(&conn)?;
    let tar_s = tar.to_str().context("path is not UTF-8")?;
    images
        .import_image(tar_s, HashMap::new())
        .context("ImportImage of the busybox image into berthd")?;
    std::fs::copy(
        src.join("units/berth-cri.socket"),
        "/run/systemd/system/berth-cri.socket",
    )?;
    let unit = std::fs::read_to_string(src.join("units/berth-cri.service"))?;
    let unit: String = unit
        .lines()
        .map(|l| match l.starts_with("ExecStart=") {
            true => format!("ExecStart={}\n", cri.display()),
            false => format!("{l}\n"),
        })
        .collect();
    std::fs::write("/run/systemd/system/berth-cri.service", unit)?;
    sh("systemctl", &["daemon-reload"])?;
    sh("systemctl", &["start", "berth-cri.socket"])?;
    Ok(())
}

/// Stops berth-cri once its pods are gone and removes its socket and run
/// directory, so the scenarios after this one find /run/berth as berthd
/// alone leaves it. Fails, leaving everything for a look, when a pod's
/// directory (pinned namespace mounts) is still there.
pub fn teardown_berth() -> Result<()> {
    let pods = Path::new(BERTH_CRI_RUN).join("pods");
    let left: Vec<_> = match std::fs::read_dir(&pods) {
        Ok(d) => d.flatten().map(|e| e.file_name()).collect(),
        Err(_) => Vec::new(),
    };
    if !left.is_empty() {
        bail!(
            "berth-cri left pod directories in {}: {left:?}",
            pods.display()
        );
    }
    sh(
        "systemctl",
        &["stop", "berth-cri.socket", "berth-cri.service"],
    )?;
    let _ = std::fs::remove_file(BERTH_CRI_SOCKET);
    match std::fs::remove_dir_all(BERTH_CRI_RUN) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| BERTH_CRI_RUN.to_string())
        }
        _ => Ok(()),
    }
}

/// Imports the busybox and pause images into containerd's k8s.io
/// namespace (containerd's CRI plugin is configured in env.rs).
pub fn setup_containerd() -> Result<()> {
    let work = Path::new(WORK);
    let bb = make_image(&work.join("image-bb"), IMAGE, r#"["/bin/sleep"]"#)?;
    // Waits until killed: containerd stops a sandbox with SIGKILL.
    let pause = make_image(
        &work.join("image-pause"),
        PAUSE_IMAGE,
        r#"["/bin/sleep","2147483647"]"#,
    )?;
    for tar in [&bb, &pause] {
        let tar = tar.to_str().context("path is not UTF-8")?;
        sh(
            "ctr",
            &[
                "--address",
                CONTAINERD_SOCKET,
                "-n",
                CONTAINERD_NAMESPACE,
                "images",
                "import",
                tar,
            ],
        )?;
    }
    Ok(())
}

/// containerd's config.toml section for its built-in CRI plugin (appended
/// to the bench's containerd config): what containerd 1.6 needs to start a
/// pod in the box (../shared/tools/README.md): no oom_score_adj below its
/// own (no CAP_SYS_RESOURCE), the local pause image, the systemd cgroup
/// driver (as berth), CNI from Debian's plugin directory, runc without the
/// CPU weight the box cannot set (runc_no_cpu.rs).
pub fn containerd_cri_config(runc: &Path) -> String {
    let runc = runc.display();
    format!(
        "[plugins.\"io.containerd.grpc.v1.cri\"]\n  \
         restrict_oom_score_adj = true\n  \
         sandbox_image = \"{PAUSE_IMAGE}\"\n  \
         [plugins.\"io.containerd.grpc.v1.cri\".cni]\n    \
         bin_dir = \"/usr/lib/cni\"\n    conf_dir = \"/etc/cni/net.d\"\n  \
         [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n    \
         runtime_type = \"io.containerd.runc.v2\"\n    \
         [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n      \
         SystemdCgroup = true\n      BinaryName = \"{runc}\"\n"
    )
}
