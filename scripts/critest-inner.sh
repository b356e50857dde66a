#!/usr/bin/env bash
# Inside the box (scripts/critest): berthd and berth-cri from this build,
# stand-in test images in a loopback registry that berthd's mirrors point
# at, a bridge CNI network, then critest.
set -euo pipefail
root=$1 critest=$2 focus=$3 bbroot=$4
bin=$root/target/debug
cp "$root/dbus/system.d/io.berth.Berth1.conf" /etc/dbus-1/system.d/
busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig
sed "s|^ExecStart=.*|ExecStart=$bin/berthd|" "$root/units/berthd.service" > /run/systemd/system/berthd.service
cp "$root/units/berth.slice" "$root/units/berth-cri.socket" /run/systemd/system/
sed "s|^ExecStart=.*|ExecStart=$bin/berth-cri|" "$root/units/berth-cri.service" > /run/systemd/system/berth-cri.service
mkdir -p /etc/cni/net.d
cat > /etc/cni/net.d/10-critest.conflist <<'JSON'
{"cniVersion":"1.0.0","name":"critest","plugins":[
 {"type":"bridge","bridge":"cni-crit0","isGateway":true,"ipMasq":true,
  "ipam":{"type":"host-local","ranges":[[{"subnet":"10.88.0.0/16"}]]}},
 {"type":"portmap","capabilities":{"portMappings":true}}]}
JSON
# A docker-registry on the box's loopback holding the stand-ins under their
# upstream paths (127.0.0.1:5000/registry.k8s.io/pause:3.9, …).
mkdir -p /tmp/registry
printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: /tmp/registry/data\nhttp:\n  addr: 127.0.0.1:5000\n' > /tmp/registry/config.yml
systemd-run --quiet --unit=critest-registry docker-registry serve /tmp/registry/config.yml
for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/5000) 2>/dev/null && break; sleep 0.1; done
"$root/scripts/critest-images/build.sh" "$bbroot" /tmp/critest-img 127.0.0.1:5000

# berthd asks the mirror first (k8s.gcr.io is registry.k8s.io's old name:
# the same images); what the mirror lacks goes to the registry itself,
# which is unreachable here.
mkdir -p /etc/berth
cat > /etc/berth/berthd.toml <<'TOML'
[[registry]]
prefix = "registry.k8s.io"
[[registry.mirror]]
location = "127.0.0.1:5000/registry.k8s.io"

[[registry]]
prefix = "k8s.gcr.io"
[[registry.mirror]]
location = "127.0.0.1:5000/registry.k8s.io"

[[registry]]
prefix = "gcr.io"
[[registry.mirror]]
location = "127.0.0.1:5000/gcr.io"
TOML
systemctl daemon-reload
systemctl start berthd berth-cri.socket

cd /tmp
args=(--runtime-endpoint unix:///run/berth/cri.sock --ginkgo.no-color --ginkgo.timeout 20m)
[ -n "$focus" ] && args+=(--ginkgo.focus "$focus")
# Specs that need what berth-cri does not serve (see docs/cri.md).
args+=(--ginkgo.skip 'SELinux|AppArmor|benchmark')
# Further critest flags (after the focus): --websocket-exec and the like.
args+=("${@:5}")
"$critest" "${args[@]}" 2>&1 || true
