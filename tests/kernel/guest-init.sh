#!/bin/sh
# /init of the pdt test guest (PID 1), installed by build-guest.sh.
#
# What run-guest.sh gives us, as virtio disks told apart by serial number:
#   meta, data    the images under test        -> $META, $DATA
#   extra1, ...   optional more images         -> $EXTRA1, ...
#   scen          tar archive: scenario.sh plus any extra files (read-only)
#   out           scratch disk: $OUT is written back to it as a tar archive
# Lines starting with "@@PDT " on the console are read by run-guest.sh; the
# last one that matters is "@@PDT END rc=N".
# Kernel command line switches: pdt.xtrace=1 runs the scenario under sh -x.

export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root DM_DISABLE_UDEV=1

mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sys /sys
for d in /tmp /run /out; do mount -t tmpfs tmpfs "$d"; done
ln -s /proc/self/fd /dev/fd

mark() { echo "@@PDT $*"; }
halt_guest() {
    sync
    mark "POWEROFF"
    poweroff -f
    sleep 5   # not reached
}

mark "INIT $(uname -r)"

while read -r ko; do
    [ -n "$ko" ] || continue
    msg=$(insmod "$ko" 2>&1) && continue
    case "$ko:$msg" in
        *"File exists"*) ;;             # loaded already, or built in
        *crc32c-intel*) ;;              # wants SSE4.2; crc32c_generic covers it
        *) echo "pdt-init: insmod $ko: $msg" ;;
    esac
done < /etc/pdt/modules

# virtio disks appear asynchronously after virtio_blk is loaded
n=0
until [ -e /sys/block/vda ] || [ $n -ge 100 ]; do sleep 0.05; n=$((n + 1)); done
scen_dev='' out_dev=''
mkdir -p /dev/pdt
for sysdev in /sys/block/vd*; do
    [ -e "$sysdev" ] || continue
    dev=/dev/${sysdev##*/}
    serial=$(cat "$sysdev/serial" 2>/dev/null)
    [ -n "$serial" ] || continue
    ln -s "$dev" "/dev/pdt/$serial"
    case $serial in
        meta) export META=$dev ;;
        data) export DATA=$dev ;;
        scen) scen_dev=$dev ;;
        out) out_dev=$dev ;;
        extra[0-9]*) export "EXTRA${serial#extra}=$dev" ;;
    esac
done
export OUT=/out SCENARIO_DIR=/scenario
mark "DISKS META=${META:-} DATA=${DATA:-} scen=$scen_dev out=$out_dev"

rc=125
if [ -z "$scen_dev" ]; then
    echo "pdt-init: no scenario disk"
elif ! tar -xf "$scen_dev" -C /scenario; then
    echo "pdt-init: cannot unpack the scenario archive"
elif [ ! -f /scenario/scenario.sh ]; then
    echo "pdt-init: scenario.sh missing from the archive"
else
    trace=
    grep -q 'pdt\.xtrace=1' /proc/cmdline && trace=-x
    cd /scenario
    mark "BEGIN $(cut -d' ' -f1 /proc/uptime)"
    sh $trace /scenario/scenario.sh
    rc=$?
    mark "DONE rc=$rc $(cut -d' ' -f1 /proc/uptime)"
    cd /
fi

# device-mapper and I/O error lines, including those under the console level
dmesg > /out/dmesg.txt
if grep -qE 'device-mapper|I/O error' /out/dmesg.txt; then
    mark "DMESG"
    grep -E 'device-mapper|I/O error' /out/dmesg.txt
    mark "DMESG-END"
fi

if [ -n "$out_dev" ]; then
    tar -cf "$out_dev" -C /out . || echo "pdt-init: \$OUT does not fit on the out disk"
    sync
fi
for d in /dev/vd?; do blockdev --flushbufs "$d" 2>/dev/null; done

mark "END rc=$rc"
halt_guest
