#!/usr/bin/env bash
# Builds stand-ins for every image critest uses and pushes them, under
# their upstream paths, to the loopback registry the mirror points at
# (scripts/critest-inner.sh). Each does what the specs check, read from
# cri-tools' pkg/validate/*.go and images/*/Dockerfile:
#   busybox   Debian's *dynamic* busybox with its libs, applets as hard links
#             (masking /bin/ls breaks ls only), plus ipcs (util-linux) and
#             pgrep (procps) with their libs; users root, www-data(33), nobody
#   nginx     nginx.c: /var/run/nginx.pid, `pidof nginx`, "master process",
#             HTTP 200 on :80 (hostnet-nginx: on :12003, from its default.conf)
#   httpd     busybox httpd serving a page on :80, saying "httpd" on stderr
#   nonewprivs  nnp.c setuid root: "Effective uid: N"
#   test-image-*  busybox + the empty file named after the image; the user
#             and predefined-group images as their Dockerfiles say
#   pause     pause.c alone, static, as /pause (an image of its own: critest
#             checks registry.k8s.io/pause:3.9 and k8s.gcr.io/pause:3.9 are
#             one image with exactly those two names)
#
#   build.sh BUSYBOX_DEB_ROOT WORKDIR REGISTRY   (REGISTRY: 127.0.0.1:5000)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bbroot=$1 work=$2 registry=$3
rm -rf "$work" && mkdir -p "$work" && cd "$work"

# A file and the shared libraries it loads, at their paths under $1.
with_libs() {
  local dest=$1 bin=$2 to=$3
  install -D -m 0755 "$bin" "$dest$to"
  ldd "$bin" | grep -o '/[^ ]*' | while read -r lib; do
    [ -e "$dest$lib" ] || install -D -m 0755 "$(realpath "$lib")" "$dest$lib"
  done
}

# --- the busybox base layer --------------------------------------------------
base=$work/base
mkdir -p "$base"/{bin,etc,root,tmp,var/run,home,usr/bin} && chmod 1777 "$base/tmp"
with_libs "$base" "$bbroot/bin/busybox" /bin/busybox
for a in $("$base/bin/busybox" --list); do
  [ "$a" = busybox ] || [ -e "$base/bin/$a" ] || ln "$base/bin/busybox" "$base/bin/$a"
done
with_libs "$base" "$(command -v ipcs)" /bin/ipcs
with_libs "$base" "$(command -v pgrep)" /bin/pgrep
cat > "$base/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
P
cat > "$base/etc/group" <<'G'
root:x:0:
daemon:x:1:
www-data:x:33:
nogroup:x:65534:
G

# A layer tar of directory $1 at $2: sorted, dated 0, owned by root, so the
# same content gives the same digest.
layer() {
  tar -C "$1" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$2" .
}
layer "$base" base.tar

# image NAME CONFIG_JSON_FRAGMENT [EXTRA_LAYER_DIR [BASE_TAR]]: a
# docker-archive of the base layer (busybox unless BASE_TAR names another,
# "" for none) and the extra layer, pushed as $registry/NAME.
image() {
  local name=$1 config=$2 extra=${3:-} basetar=${4-base.tar} d
  d=$(mktemp -d "$work/img.XXXX")
  local layers=() diffs=()
  if [ -n "$basetar" ]; then
    cp "$basetar" "$d/base.tar"
    layers+=('"base.tar"')
    diffs+=("\"sha256:$(sha256sum "$basetar" | cut -d' ' -f1)\"")
  fi
  if [ -n "$extra" ]; then
    layer "$extra" "$d/extra.tar"
    layers+=('"extra.tar"')
    diffs+=("\"sha256:$(sha256sum "$d/extra.tar" | cut -d' ' -f1)\"")
  fi
  printf '{"architecture":"amd64","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":[%s]}}' \
    "$config" "$(IFS=,; echo "${diffs[*]}")" > "$d/config.json"
  local cfg; cfg=$(sha256sum "$d/config.json" | cut -d' ' -f1)
  mv "$d/config.json" "$d/$cfg.json"
  printf '[{"Config":"%s.json","RepoTags":null,"Layers":[%s]}]' "$cfg" "$(IFS=,; echo "${layers[*]}")" > "$d/manifest.json"
  (cd "$d" && tar -cf "$d.tar" manifest.json "$cfg.json" $(ls -- *.tar))
  skopeo --insecure-policy copy --quiet --dest-tls-verify=false \
    "docker-archive:$d.tar" "docker://$registry/$name"
  rm -rf "$d" "$d.tar"
}

sh_cmd='{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]}'
k8s=registry.k8s.io/e2e-test-images cri=gcr.io/k8s-staging-cri-tools
image $k8s/busybox:1.29-2 "$sh_cmd"

mkdir -p pause
gcc -Os -Wall -static -o pause/pause "$here/pause.c"
for tag in 3.9 3.10; do
  image registry.k8s.io/pause:$tag '{"Entrypoint":["/pause"]}' pause ""
done

# nginx and hostnet-nginx: the same program, the port from default.conf.
mkdir -p nginx/usr/sbin nginx/etc/nginx/conf.d
gcc -Os -Wall -o nginx/usr/sbin/nginx "$here/nginx.c"
cp -a nginx hostnet
echo 'server { listen 12003; }' > hostnet/etc/nginx/conf.d/default.conf
nginx_cmd='{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["nginx","-g","daemon off;"],"ExposedPorts":{"80/tcp":{}},"StopSignal":"SIGQUIT"}'
image $k8s/nginx:1.14-2 "$nginx_cmd" nginx
image $cri/hostnet-nginx-amd64:latest "$nginx_cmd" hostnet

# httpd: busybox httpd, announcing itself on stderr as Apache's does.
mkdir -p httpd/usr/local/apache2/htdocs httpd/usr/local/bin
echo '<html><body><h1>It works!</h1></body></html>' > httpd/usr/local/apache2/htdocs/index.html
cat > httpd/usr/local/bin/httpd-foreground <<'H'
#!/bin/sh
echo "httpd (busybox stand-in): serving /usr/local/apache2/htdocs on port 80" >&2
exec httpd -f -p 80 -h /usr/local/apache2/htdocs
H
chmod 0755 httpd/usr/local/bin/httpd-foreground
image $k8s/httpd:2.4.39-4 \
  '{"Env":["PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["httpd-foreground"],"WorkingDir":"/usr/local/apache2","ExposedPorts":{"80/tcp":{}}}' httpd

# nonewprivs: setuid root nnp (the layer keeps the mode: tar of root-owned files).
mkdir -p nnp/usr/local/bin
gcc -Os -Wall -o nnp/usr/local/bin/nnp "$here/nnp.c"
chmod 4755 nnp/usr/local/bin/nnp
image $k8s/nonewprivs:1.3 '{"Env":["PATH=/usr/local/bin:/usr/bin:/bin"],"Entrypoint":["/usr/local/bin/nnp"]}' nnp

# test-image-N: `ADD ${TEST} ${TEST}` — an empty file named after the image.
for t in test-image-1 test-image-2 test-image-3 test-image-latest test-image-digest test-image-tag; do
  mkdir -p "$t" && : > "$t/$t"
done
for t in test-image-1 test-image-2 test-image-3 test-image-latest test-image-digest; do
  image $cri/$t:latest "$sh_cmd" $t
done
image $cri/test-image-tag:test "$sh_cmd" test-image-tag
image $cri/test-image-tag:all "$sh_cmd" test-image-tag
# test-image-tags:1,2,3: one image (file same-image) under three tags.
mkdir -p same && : > same/same-image
for tag in 1 2 3; do image $cri/test-image-tags:$tag "$sh_cmd" same; done

# USER images: uid, username, uid:group, username:group.
user_image() {
  image "$cri/$1:latest" "{\"Env\":[\"PATH=/usr/sbin:/usr/bin:/sbin:/bin\"],\"Cmd\":[\"sh\"],\"User\":\"$2\"}"
}
user_image test-image-user-uid 1002
user_image test-image-user-username www-data
user_image test-image-user-uid-group 1003:1004
user_image test-image-user-username-group www-data:1004

# predefined-group: default-user(1000) in group-defined-in-image(50000), USER 1000.
mkdir -p predefined/etc predefined/home/default-user
cp "$base/etc/passwd" "$base/etc/group" predefined/etc/
echo 'default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh' >> predefined/etc/passwd
printf 'default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n' >> predefined/etc/group
image $cri/test-image-predefined-group:latest \
  '{"Env":["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"],"User":"1000"}' predefined
