#!/usr/bin/env bash
# Runs inside berth's systemd box (see scripts/demo): installs the package as
# a person would, then runs containers through the installed berthd.
set -euo pipefail
DEB=$1
say() { printf '\n== %s\n' "$*"; }

say "systemd in the box: PID 1 is $(cat /proc/1/comm), state $(systemctl is-system-running || true)"
# Container-style hosts ship a policy-rc.d forbidding maintainer scripts to
# start services; this box is a real system (and a throwaway overlay).
rm -f /usr/sbin/policy-rc.d
say "dpkg -i $(basename "$DEB")"
dpkg -i "$DEB" >/dev/null
systemctl --no-pager status berthd | head -n 4
berthctl version

say "a busybox bundle (berth-runtime spec) and an image of it (docker save format)"
B=/var/lib/berth-demo/bundle
mkdir -p $B/rootfs/bin
cp /bin/busybox $B/rootfs/bin/ && for a in sh echo hostname cat sleep; do ln -sf busybox $B/rootfs/bin/$a; done
( cd $B && berth-runtime spec && sed -i 's/"terminal": true/"terminal": false/' config.json )
I=/var/lib/berth-demo/image && mkdir -p $I && tar -C $B/rootfs -cf $I/layer.tar .
diff=$(sha256sum $I/layer.tar | cut -d' ' -f1)
printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh","-c","echo hello from an image"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$diff" > $I/config.json
echo '[{"Config":"config.json","RepoTags":["demo/busybox:1"],"Layers":["layer.tar"]}]' > $I/manifest.json
tar -C $I -cf $I/busybox.tar manifest.json config.json layer.tar

say "berthctl run --rm --bundle $B sh -c 'echo hello from \$(hostname); exit 7'"
berthctl run --rm --bundle $B sh -c 'echo hello from $(hostname); exit 7' || echo "exit code $?"
say "berthctl image import; berthctl run --rm demo/busybox:1"
berthctl image import $I/busybox.tar
berthctl run --rm demo/busybox:1

say "a container as a unit: systemctl start berth@web (/etc/berth/containers/web.toml)"
mkdir -p /etc/berth/containers
printf 'image = "demo/busybox:1"\ncommand = ["sh", "-c", "echo web is up; exec sleep 300"]\nstop_timeout = 1\n' > /etc/berth/containers/web.toml
systemctl start berth@web
berthctl ps
sleep 0.3; journalctl --sync; journalctl -o cat -u berth@web | grep -v '^$' | tail -n 2
systemctl stop berth@web

M="io.berth.Berth1 /io/berth/Berth1 io.berth.Berth1.Manager"
say "nothing but busctl: CreateContainer, StartContainer, WaitContainer, DeleteContainer"
busctl call -- $M CreateContainer 'ssa{sv}' demo $B 1 args as 3 sh -c 'echo hello over D-Bus'
busctl call $M StartContainer s demo
busctl call $M WaitContainer s demo
journalctl --sync; journalctl -o cat CONTAINER_NAME=demo | tail -n 1
busctl call $M DeleteContainer sb demo false
busctl call $M ListContainers
