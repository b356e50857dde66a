//! `berthctl auto-update` against a loopback docker-registry: v1 runs under
//! berth@au; v2 pushed → --dry-run says pending and changes nothing, then
//! the update restarts the unit on v2; a broken v3 → rolled back to v2.

use berth_box::SystemdBox;

use super::common::*;

/// Builds /tmp/au/V.tar (docker-save layout, one busybox layer shared by
/// every version) whose config says `V=<version>` and runs `cmd` (JSON).
fn archive(version: &str, cmd: &str) -> String {
    format!(
        r#"set -e
mkdir -p /tmp/au && cd /tmp/au
if [ ! -f layer.tar ]; then
  mkdir -p layer/bin layer/tmp
  cp /bin/busybox layer/bin/busybox
  for t in sh sleep echo; do ln -sf busybox layer/bin/$t; done
  tar -C layer --owner=0 --group=0 -cf layer.tar .
fi
diff=$(sha256sum layer.tar | cut -d' ' -f1)
rm -rf {version} && mkdir {version} && cp layer.tar {version}/
cat > {version}/config.json <<EOF
{{"architecture":"amd64","os":"linux","config":{{"Env":["PATH=/bin","V={version}"],"Cmd":{cmd}}},
 "rootfs":{{"type":"layers","diff_ids":["sha256:$diff"]}}}}
EOF
cd {version} && cfg=$(sha256sum config.json | cut -d' ' -f1) && mv config.json $cfg.json
echo "[{{\"Config\":\"$cfg.json\",\"RepoTags\":[\"au:latest\"],\"Layers\":[\"layer.tar\"]}}]" > manifest.json
tar -cf ../{version}.tar manifest.json $cfg.json layer.tar
"#
    )
}

fn push(b: &SystemdBox, port: u16, version: &str, cmd: &str) {
    let t0 = std::time::Instant::now();
    b.sh_ok(&archive(version, cmd));
    b.sh_ok(&format!(
        "skopeo --insecure-policy copy --quiet --dest-tls-verify=false \
         docker-archive:/tmp/au/{version}.tar docker://127.0.0.1:{port}/au:latest"
    ));
    eprintln!("v{version} pushed in {:?}", t0.elapsed());
}

fn running_version(b: &SystemdBox) -> String {
    ctl_ok(b, "exec au sh -c 'echo $V'").trim().to_string()
}

const SERVE: &str = r#"["sh","-c","trap 'exit 0' TERM; while :; do sleep 1 & wait; done"]"#;

pub fn auto_update(b: &SystemdBox) {
    for tool in ["docker-registry", "skopeo"] {
        if b.sh(&format!("command -v {tool}"))
            .map_or(true, |o| !o.status.success())
        {
            println!("SKIP auto-update: {tool} is not installed (scripts/deps installs it)");
            return;
        }
    }
    let port = start_registry(b);
    let image = format!("127.0.0.1:{port}/au:latest");
    push(b, port, "1", SERVE);
    ctl_ok(b, &format!("image pull {image}"));
    b.sh_ok(&format!(
        "printf 'image = \"{image}\"\\nstop_timeout = 2\\n[labels]\\n\"io.berth.autoupdate\" = \"registry\"\\n' \
           > /etc/berth/containers/au.toml && systemctl start berth@au.service"
    ));
    assert_eq!(running_version(b), "1");

    let out = ctl_ok(b, "auto-update --dry-run");
    let row = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("berth@au.service"))
            .unwrap_or_else(|| panic!("no row for berth@au: {out}"))
            .split_whitespace()
            .skip(4)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(row(&out), "false", "{out}");

    push(b, port, "2", SERVE);
    let out = ctl_ok(b, "auto-update --dry-run");
    assert_eq!(row(&out), "pending", "{out}");
    assert_eq!(running_version(b), "1", "a dry run changed nothing");

    let t0 = std::time::Instant::now();
    let out = ctl_ok(b, "auto-update");
    eprintln!("auto-update with a restart: {:?}", t0.elapsed());
    assert_eq!(row(&out), "true", "{out}");
    assert_eq!(running_version(b), "2");
    assert_eq!(
        b.sh_ok("systemctl is-active berth@au.service").trim(),
        "active"
    );

    // v3 cannot start: the unit fails, the name goes back to v2, which runs.
    push(b, port, "3", r#"["/no/such/program"]"#);
    let t0 = std::time::Instant::now();
    let (code, out, err) = ctl(b, "auto-update");
    assert_eq!(code, 1, "{out}{err}");
    eprintln!("auto-update rolled back in {:?}:\n{out}", t0.elapsed());
    assert!(row(&out).starts_with("rolled back"), "{out}");
    assert_eq!(
        b.sh_ok("systemctl is-active berth@au.service").trim(),
        "active"
    );
    assert_eq!(running_version(b), "2");
    let names = ctl_ok(b, "image ls");
    assert!(
        !names.contains("berth-auto-update"),
        "the rollback name stayed: {names}"
    );
    b.sh_ok("systemctl stop berth@au.service test-registry && rm /etc/berth/containers/au.toml");
}
