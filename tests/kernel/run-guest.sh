#!/bin/bash
# Boots Debian's kernel under qemu over two raw images and runs a scenario in
# it; see README.md beside this file.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
kdir=${PDT_KERNEL_DIR:-$HOME/.cache/pdt-kernel}

usage() {
    cat <<'EOF'
usage: run-guest.sh [options] META_IMG DATA_IMG SCENARIO.sh [FILE...]

The guest sees META_IMG as $META and DATA_IMG as $DATA, runs SCENARIO.sh with
busybox sh in /scenario (FILE... copied beside it), powers off, and this
script exits with the scenario's status.

  --meta-size SIZE    size of META_IMG when it has to be created (default 16M)
  --data-size SIZE    size of DATA_IMG when it has to be created (default 256M)
  --extra IMG[:SIZE]  one more disk, $EXTRA1, $EXTRA2, ... (default size 64M)
  --out DIR           bring the files the scenario leaves in $OUT back to DIR
                      (plus the guest's full dmesg.txt)
  --out-size SIZE     room for $OUT (default 32M)
  --log FILE          console log (default PDT_KERNEL_DIR/last-run.log)
  --timeout SECS      give up after SECS (default 300)
  --mem MB            guest memory (default 512)
  --accel tcg|kvm     default: kvm only when kvm_intel/kvm_amd is loaded
  --append TEXT       more kernel command line
  --xtrace            run the scenario with sh -x
  -q, --quiet         do not copy the console to stdout
Exit status: the scenario's; 124 when the timeout hit, 125 when the guest
never reported a status (panic, missing scenario...), 2 for bad usage,
3 when the guest could not be built.
EOF
}

meta_size=16M data_size=256M out_dir='' out_size=32M log='' timeout=300 mem=512
accel='' append='' xtrace=0 quiet=0
extras=() args=()
while [ $# -gt 0 ]; do
    case $1 in
        --meta-size) meta_size=$2; shift 2 ;;
        --data-size) data_size=$2; shift 2 ;;
        --extra) extras+=("$2"); shift 2 ;;
        --out) out_dir=$2; shift 2 ;;
        --out-size) out_size=$2; shift 2 ;;
        --log) log=$2; shift 2 ;;
        --timeout) timeout=$2; shift 2 ;;
        --mem) mem=$2; shift 2 ;;
        --accel) accel=$2; shift 2 ;;
        --append) append=$2; shift 2 ;;
        --xtrace) xtrace=1; shift ;;
        -q|--quiet) quiet=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; args+=("$@"); break ;;
        -*) echo "run-guest: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
[ ${#args[@]} -ge 3 ] || { usage >&2; exit 2; }
meta=${args[0]} data=${args[1]} scenario=${args[2]}
files=("${args[@]:3}")
[ -f "$scenario" ] || { echo "run-guest: no such scenario: $scenario" >&2; exit 2; }

say() { echo "run-guest: $*" >&2; }

bash "$here/build-guest.sh" || { say "building the guest failed"; exit 3; }
kernel=$kdir/vmlinuz
[ -f "$kdir/vmlinux" ] && kernel=$kdir/vmlinux
log=${log:-$kdir/last-run.log}

if [ -z "$accel" ]; then
    # /dev/kvm alone is not enough: some nested setups back it with a
    # paravirtual module on which a stock kernel barely runs.
    accel=tcg
    if [ -w /dev/kvm ] && { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; }; then
        accel=kvm
    fi
fi
case $accel in
    tcg) accel_args=(-accel tcg -cpu max) ;;
    kvm) accel_args=(-accel kvm -cpu host) ;;
    *) say "bad --accel $accel"; exit 2 ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/pdt-guest.XXXXXX")
trap 'rm -rf "$work"' EXIT

new_image() {   # PATH SIZE: sparse, zero-filled, only if absent
    [ -e "$1" ] && return 0
    mkdir -p "$(dirname "$1")"
    truncate -s "$2" "$1"
}
new_image "$meta" "$meta_size"
new_image "$data" "$data_size"

mkdir "$work/scen"
cp "$scenario" "$work/scen/scenario.sh"
for f in "${files[@]}"; do cp -r "$f" "$work/scen/"; done
tar -C "$work/scen" --owner=0 --group=0 -cf "$work/scen.tar" .
truncate -s %1M "$work/scen.tar"   # a whole number of MiB keeps partition probing quiet

disks=()
disk() {   # FILE SERIAL EXTRA-OPTIONS
    local id=disk${#disks[@]}
    disks+=(-drive "if=none,id=$id,file=$1,format=raw,cache=unsafe,aio=threads$3"
            -device "virtio-blk-pci,drive=$id,serial=$2")
}
disk "$meta" meta ",discard=unmap"
disk "$data" data ",discard=unmap"
disk "$work/scen.tar" scen ",readonly=on"
if [ -n "$out_dir" ]; then
    truncate -s "$out_size" "$work/out.img"
    disk "$work/out.img" out ""
fi
n=0
for e in "${extras[@]}"; do
    n=$((n + 1))
    img=${e%%:*} size=64M
    [ "$img" = "$e" ] || size=${e#*:}
    new_image "$img" "$size"
    disk "$img" "extra$n" ",discard=unmap"
done

cmdline="console=ttyS0 loglevel=5 panic=-1 mitigations=off"
[ $xtrace = 1 ] && cmdline+=" pdt.xtrace=1"
[ -n "$append" ] && cmdline+=" $append"

mkdir -p "$(dirname "$log")"
start=$(date +%s.%N)
set +e
timeout -k 5 "$timeout" qemu-system-x86_64 -nodefaults -no-user-config -machine pc \
    "${accel_args[@]}" -m "$mem" -smp 1 -display none -serial stdio -no-reboot \
    -kernel "$kernel" -initrd "$kdir/initramfs.cpio" -append "$cmdline" \
    "${disks[@]}" < /dev/null 2>&1 | tr -d '\r' | if [ $quiet = 1 ]; then cat > "$log"; else tee "$log"; fi
qemu_rc=${PIPESTATUS[0]}
set -e
wall=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

if [ -n "$out_dir" ]; then
    mkdir -p "$out_dir"
    tar -xf "$work/out.img" -C "$out_dir" 2>/dev/null || say "the guest sent no \$OUT archive back"
fi
if [ "$qemu_rc" = 124 ] || [ "$qemu_rc" = 137 ]; then
    say "timeout after ${timeout}s; console log: $log"
    exit 124
fi
rc=$(sed -n 's/^@@PDT END rc=\([0-9][0-9]*\)$/\1/p' "$log" | tail -n1)
if [ -z "$rc" ]; then
    say "the guest reported no status (qemu rc=$qemu_rc, ${wall}s); console log: $log"
    exit 125
fi
say "scenario rc=$rc in ${wall}s ($accel)"
exit "$rc"
