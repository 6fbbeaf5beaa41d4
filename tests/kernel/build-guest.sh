#!/bin/bash
# Builds the guest used by run-guest.sh: Debian's kernel (decompressed so qemu
# can start it through its PVH entry point) and an uncompressed initramfs with
# busybox, dmsetup, the device-mapper modules and (for checks inside the
# guest) thin-provisioning-tools.
#
# Output folder: ${PDT_KERNEL_DIR:-$HOME/.cache/pdt-kernel}
#   vmlinux         kernel for PVH boot (absent if it could not be extracted)
#   vmlinuz         Debian's bzImage (fallback, slower to boot)
#   initramfs.cpio  the guest userland
#   build-info.txt  kernel and package versions
#
# Missing Debian packages are installed with apt-get (as root, or through
# sudo -n). Nothing is rebuilt when the output is newer than the scripts in
# this folder and was made for the same kernel; --force rebuilds anyway.
#
# Env: PDT_KERNEL_DIR  output folder
#      PDT_KVER        kernel version to use (default: newest /boot/vmlinuz-*)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dest=${PDT_KERNEL_DIR:-$HOME/.cache/pdt-kernel}
force=0
case "${1:-}" in
    --force) force=1 ;;
    '') ;;
    *) echo "usage: build-guest.sh [--force]" >&2; exit 2 ;;
esac

say() { echo "build-guest: $*" >&2; }
die() { say "error: $*"; exit 1; }

# ------------------------------------------------------------ packages
packages=(qemu-system-x86 linux-image-amd64 busybox-static dmsetup kmod cpio
          thin-provisioning-tools xz-utils zstd util-linux tar coreutils)
missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    sudo=()
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || die "not root and no sudo: install ${missing[*]} yourself"
        sudo=(sudo -n)
    fi
    apt_try() {   # dpkg may be locked by another apt: keep trying for ~10 min
        local n
        for n in $(seq 1 60); do
            "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive "$@" && return 0
            say "apt-get failed or dpkg locked (attempt $n), retrying in 10 s"
            sleep 10
        done
        return 1
    }
    apt_try apt-get update -q || die "apt-get update failed"
    apt_try apt-get install -y -q --no-install-recommends "${missing[@]}" \
        || die "could not install ${missing[*]}"
fi

# ------------------------------------------------------------ kernel choice
if [ -z "${PDT_KVER:-}" ]; then
    PDT_KVER=$(for k in /boot/vmlinuz-*; do
                   v=${k#/boot/vmlinuz-}
                   [ -d "/lib/modules/$v" ] && echo "$v"
               done | sort -V | tail -n1)
fi
kver=$PDT_KVER
[ -n "$kver" ] && [ -r "/boot/vmlinuz-$kver" ] && [ -d "/lib/modules/$kver" ] \
    || die "no usable kernel in /boot (want /boot/vmlinuz-VER and /lib/modules/VER)"

# ------------------------------------------------------------ up to date?
mkdir -p "$dest"
exec 9>"$dest/.build.lock"
flock 9   # concurrent callers wait here, then find the work done

up_to_date() {
    [ -s "$dest/initramfs.cpio" ] && [ -s "$dest/vmlinuz" ] && [ -f "$dest/build-info.txt" ] || return 1
    grep -qx "kver=$kver" "$dest/build-info.txt" || return 1
    local f
    for f in build-guest.sh guest-init.sh guest-lib.sh; do
        [ "$here/$f" -nt "$dest/build-info.txt" ] && return 1
    done
    return 0
}
if [ $force = 0 ] && up_to_date; then
    exit 0
fi

say "building guest for kernel $kver in $dest"
root=$(mktemp -d "$dest/.root.XXXXXX")
trap 'rm -rf "$root" "$dest"/*.new' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,etc/pdt,dev,proc,sys,tmp,run,out,scenario,root}

# ------------------------------------------------------------ busybox
bb=/bin/busybox
file -L "$bb" 2>/dev/null | grep -q 'statically linked' || [ ! -x /usr/bin/file ] \
    || die "$bb is not static (busybox-static expected)"
cp "$bb" "$root/bin/busybox"
for applet in $("$bb" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
# device nodes need root; without them the kernel still starts /init, which
# mounts devtmpfs before it touches the console
mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true
mknod -m 666 "$root/dev/null" c 1 3 2>/dev/null || true

# ------------------------------------------------------------ modules
# modprobe resolves dependencies and soft dependencies into an ordered list of
# insmod lines; /init loads /etc/pdt/modules top to bottom.
want=(virtio_pci virtio_blk dm-mod dm-bufio dm-bio-prison dm-persistent-data
      dm-thin-pool dm-flakey dm-log-writes dm-delay dm-zero dm-cache dm-cache-smq dm-era)
declare -A have=()
: > "$root/etc/pdt/modules"
for m in "${want[@]}"; do
    deps=$(modprobe -S "$kver" --show-depends "$m") || die "module $m not found for $kver"
    while read -r verb path _; do
        [ "$verb" = insmod ] || continue          # 'builtin NAME' needs nothing
        [ -z "${have[$path]:-}" ] || continue
        have[$path]=1
        target=$root$path
        mkdir -p "$(dirname "$target")"
        case "$path" in
            *.ko.xz)  target=${target%.xz};  xz -dc "$path" > "$target" ;;
            *.ko.zst) target=${target%.zst}; zstd -qdc "$path" > "$target" ;;
            *.ko.gz)  target=${target%.gz};  gzip -dc "$path" > "$target" ;;
            *.ko)     cp "$path" "$target" ;;
            *) die "unexpected module file $path" ;;
        esac
        echo "${target#"$root"}" >> "$root/etc/pdt/modules"
    done <<< "$deps"
done

# ------------------------------------------------------------ dynamic binaries
add_binary() {   # copies a program and the libraries ldd finds for it
    local prog=$1 lib
    mkdir -p "$root$(dirname "$prog")"
    cp -L "$prog" "$root$prog"
    for lib in $(ldd "$prog" | sed -n 's/.*=> \(\/[^ ]*\).*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) .*/\1/p'); do
        [ -e "$root$lib" ] && continue
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
}
add_binary /usr/sbin/dmsetup
add_binary /usr/sbin/pdata_tools
for t in thin_check thin_dump thin_ls thin_repair thin_restore thin_delta \
         cache_check cache_dump era_check era_dump; do
    ln -s pdata_tools "$root/usr/sbin/$t"
done
[ -e "$root/lib64/ld-linux-x86-64.so.2" ] || cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"

install -m 755 "$here/guest-init.sh" "$root/init"
install -m 644 "$here/guest-lib.sh" "$root/lib/pdt-guest.sh"
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"

# ------------------------------------------------------------ initramfs
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) \
    > "$dest/initramfs.cpio.new"

# ------------------------------------------------------------ kernel
cp "/boot/vmlinuz-$kver" "$dest/vmlinuz.new"
# The bzImage carries the real kernel as a compressed ELF payload. Try each
# compressor's magic bytes and keep the first candidate that inflates to ELF.
extract_elf() {
    local img=$1 out=$2 magic tool off
    while read -r magic tool; do
        for off in $(LC_ALL=C grep -aboP "$magic" "$img" 2>/dev/null | head -n 8 | cut -d: -f1); do
            tail -c +"$((off + 1))" "$img" | $tool > "$out" 2>/dev/null || true
            if [ "$(head -c 4 "$out" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; then
                return 0
            fi
        done
    done <<'EOF'
\xfd7zXZ\x00 xz -dcq
\x28\xb5\x2f\xfd zstd -dcq
\x1f\x8b\x08 gzip -dcq
EOF
    rm -f "$out"
    return 1
}
if extract_elf "$dest/vmlinuz.new" "$dest/vmlinux.new"; then
    mv "$dest/vmlinux.new" "$dest/vmlinux"
else
    rm -f "$dest/vmlinux"
    say "warning: could not extract an ELF vmlinux; booting the bzImage (slower)"
fi
mv "$dest/vmlinuz.new" "$dest/vmlinuz"
mv "$dest/initramfs.cpio.new" "$dest/initramfs.cpio"

{
    echo "kver=$kver"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "kernel-package=$(dpkg -S "/boot/vmlinuz-$kver" 2>/dev/null | cut -d: -f1)"
    for p in qemu-system-x86 busybox-static dmsetup thin-provisioning-tools; do
        echo "$p=$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null)"
    done
    echo "boot=$([ -f "$dest/vmlinux" ] && echo pvh-vmlinux || echo bzimage)"
    sed 's/^/module=/' "$root/etc/pdt/modules"
} > "$dest/build-info.txt"
say "done: $(du -h "$dest/initramfs.cpio" | cut -f1) initramfs, $(grep -c . "$root/etc/pdt/modules") modules"
