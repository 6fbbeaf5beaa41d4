#!/bin/bash
# Runs the whole test suite: unit and property tests, the Debian
# thin-provisioning-tools oracle tests and the real-kernel tests under qemu.
# Installs the Debian packages the tests need when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in thin-provisioning-tools qemu-system-x86 qemu-utils linux-image-amd64 busybox-static dmsetup kmod cpio nbd-client e2fsprogs; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    echo "installing: ${need[*]}"
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
        if $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"; then
            break
        fi
        [ "$attempt" -eq 10 ] && exit 1
        $SUDO apt-get update || true
        sleep 5
    done
fi

cargo test --workspace "$@"
