#!/usr/bin/env bash
# Builds the exhook-gateway OCI image here, without a registry, a base image or a daemon: the
# release binary, the shared libraries it links and their loader (from ldd), the CA roots,
# /etc/passwd and /etc/group with user 65532, and deploy/container/gateway.toml as
# /etc/exhook-gateway/gateway.toml, assembled into one layer with umoci (Debian: umoci).
# The image matches deploy/container/Containerfile: user 65532:65532, EXPOSE 9000 9443 9100,
# ENTRYPOINT exhook-gateway run --config /etc/exhook-gateway/gateway.toml, version label.
#
#   bash deploy/container/build-image.sh [OUT_DIR]     # default target/container
#
# Output: OUT_DIR/oci (an OCI image layout, tag = the version) and OUT_DIR/exhook-gateway.oci.tar
# (the same as an OCI archive), e.g.
#   skopeo copy oci-archive:target/container/exhook-gateway.oci.tar docker-daemon:exhook-gateway:0.1.0
#   podman load -i target/container/exhook-gateway.oci.tar
# EXHOOK_GATEWAY_BIN names another binary (default target/release/exhook-gateway, built when
# missing). umoci unpacks as root; as another user it runs --rootless.
set -euo pipefail
cd "$(dirname "$0")/../.."

target_dir="${CARGO_TARGET_DIR:-target}"
out="${1:-$target_dir/container}"
bin="${EXHOOK_GATEWAY_BIN:-$target_dir/release/exhook-gateway}"
command -v umoci >/dev/null || { echo "build-image.sh: umoci not found (Debian: apt-get install umoci)" >&2; exit 1; }
if [[ ! -x "$bin" ]]; then
  echo "== building $bin (release)" >&2
  cargo build --release --locked -p exhook-gateway
fi
ca=/etc/ssl/certs/ca-certificates.crt
[[ -f "$ca" ]] || { echo "build-image.sh: $ca not found (Debian: apt-get install ca-certificates)" >&2; exit 1; }

version_line="$("$bin" --version)"          # e.g. "exhook-gateway 0.1.0"
version="${version_line##* }"
rootless=()
[[ "$(id -u)" == 0 ]] || rootless=(--rootless)

rm -rf "$out"
mkdir -p "$out"
layout="$out/oci"
image="$layout:$version"
bundle="$out/bundle"
umoci init --layout "$layout"
umoci new --image "$image"
umoci unpack "${rootless[@]}" --image "$image" "$bundle"
root="$bundle/rootfs"

# A merged-/usr tree like Debian's: /lib and /lib64 point into /usr.
install -d -m 0755 "$root"/usr/{bin,local/bin,lib,lib64} "$root"/etc/ssl/certs "$root"/etc/exhook-gateway
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"
ln -s usr/bin "$root/bin"
install -d -m 1777 "$root/tmp"
install -d -m 0700 "$root/home/nonroot"
chown 65532:65532 "$root/home/nonroot" 2>/dev/null || true

# The release profile keeps debug info (for profiling); the image does not need it.
if command -v strip >/dev/null; then
  strip --strip-debug -o "$root/usr/local/bin/exhook-gateway" "$bin"
  chmod 0755 "$root/usr/local/bin/exhook-gateway"
else
  echo "build-image.sh: no strip (Debian: binutils): the image keeps the binary's debug info" >&2
  install -m 0755 "$bin" "$root/usr/local/bin/exhook-gateway"
fi
# Every library ldd resolves (libc, libgcc_s, libm, ...) and the loader, at the path the binary
# asks for (a path under /lib or /lib64 lands in /usr through the links above).
libs="$(ldd "$bin" | awk '/=> \// { print $3 } /^\t\// { print $1 }')"
[[ -n "$libs" ]] || { echo "build-image.sh: ldd found no libraries in $bin (static? then none are needed)" >&2; }
for lib in $libs; do
  dest="$root/usr${lib#/usr}"
  install -D -m 0755 "$(readlink -f "$lib")" "$dest"
done
install -m 0644 "$ca" "$root/etc/ssl/certs/ca-certificates.crt"
install -m 0644 deploy/container/gateway.toml "$root/etc/exhook-gateway/gateway.toml"
cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
nonroot:x:65532:
GROUP
chmod 0644 "$root/etc/passwd" "$root/etc/group"
# The image's own configuration must be valid for the binary it ships.
"$bin" check --config deploy/container/gateway.toml >/dev/null

umoci repack --image "$image" --history.created_by "deploy/container/build-image.sh: exhook-gateway, its libraries, CA roots, passwd, gateway.toml" "$bundle"
now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
umoci config --image "$image" \
  --os linux --architecture "$(uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/')" \
  --config.user 65532:65532 \
  --config.workingdir / \
  --config.env PATH=/usr/local/bin:/usr/bin:/bin \
  --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --config.entrypoint /usr/local/bin/exhook-gateway --config.entrypoint run \
  --config.entrypoint --config --config.entrypoint /etc/exhook-gateway/gateway.toml \
  --clear config.cmd \
  --config.exposedports 9000/tcp --config.exposedports 9443/tcp --config.exposedports 9100/tcp \
  --config.label "org.opencontainers.image.title=exhook-gateway" \
  --config.label "org.opencontainers.image.version=$version_line" \
  --config.label "org.opencontainers.image.licenses=Apache-2.0" \
  --config.label "org.opencontainers.image.created=$now" \
  --created "$now" \
  --config.stopsignal SIGTERM \
  --history.created_by "deploy/container/build-image.sh: user 65532, entrypoint, ports, labels"
umoci gc --layout "$layout"
rm -rf "$bundle"
# The OCI archive: the layout as one tar, entries at its root.
tar -C "$layout" --owner=0 --group=0 --numeric-owner --sort=name -cf "$out/exhook-gateway.oci.tar" .

echo "image: $image ($version_line)"
echo "archive: $out/exhook-gateway.oci.tar ($(du -h "$out/exhook-gateway.oci.tar" | cut -f1))"
