# Kernel shrink test (tests/kernel_shrink.rs). PHASE=write (first boot): on
# zeroed $META and a data device of NR_BLOCKS blocks, the kernel writes
# thins 1, 2 and 4 and a snapshot 3 of thin 1 (sharing broken from both
# sides), deletes thin 2 (freeing low blocks), saves each volume's md5sum
# and removes everything (committing). PHASE=read (second boot, after
# `pdt thin_shrink` and the data device cut to the new NR_BLOCKS): the
# shrunk pool activates, the sums are saved again, thin 4 gets new blocks,
# and everything is removed.
# Files from the host: shrink.params (PHASE BS NR_BLOCKS THIN_SECTORS).
. /lib/pdt-guest.sh
. ./shrink.params

# w THIN BLOCK COUNT: random data into data blocks BLOCK.. of a thin.
w() {
    must dd if=/dev/urandom of="/dev/mapper/$1" bs=$((BS * 512)) seek="$2" count="$3" oflag=direct status=none
}

sums() {
    for _t in 1 3 4; do
        echo "thin$_t $(md5sum < "/dev/mapper/thin$_t")"
    done > "$OUT/$1"
}

if [ "$PHASE" = write ]; then
    step "thins 1, 2, 4 on a fresh pool of $NR_BLOCKS blocks"
    pool_up pool "$META" "$DATA" "$BS" "$NR_BLOCKS"
    for _t in 1 2 4; do must dmsetup message pool 0 "create_thin $_t"; done
    thin_up thin1 pool 1 "$THIN_SECTORS"
    thin_up thin2 pool 2 "$THIN_SECTORS"
    w thin1 0 64
    w thin2 0 64

    step "snapshot 3 of thin 1, sharing broken from both sides"
    must dmsetup suspend thin1
    must dmsetup message pool 0 "create_snap 3 1"
    must dmsetup resume thin1
    thin_up thin3 pool 3 "$THIN_SECTORS"
    w thin3 0 16
    w thin1 16 8
    thin_up thin4 pool 4 "$THIN_SECTORS"
    w thin4 10 40

    step "delete thin 2"
    down thin2
    must dmsetup message pool 0 "delete 2"
    sums sums.txt
else
    step "the shrunk pool on $NR_BLOCKS blocks"
    activate 1 3 4
    sums sums.txt
    w thin4 60 4
    save_status status.txt pool
fi

step "remove everything (the pool commits)"
deactivate 1 3 4
exit 0
