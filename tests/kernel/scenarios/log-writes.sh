# Kernel test 4: dm-log-writes records every metadata write of the kernel.
# The pool's metadata device is a log-writes target over $META that logs to
# $EXTRA1. The kernel formats the zeroed $META, then creates thins, writes,
# snapshots, deletes and discards, committing in several ways (pool
# messages, status without --noflush, suspend/resume, removal). After each
# commit a log mark names the state; the host replays the log and checks
# crash images between all those writes. The host makes $META small (128
# blocks of 4 KiB), so the rounds at the end make the kernel reuse blocks.
# Files: params (BS NR_BLOCKS THIN_SECTORS DISCARD_OFF DISCARD_LEN, bytes),
# writes-1.txt .. writes-4.txt (io_list format), rounds.txt (io_list
# lines, each followed by a commit) and the blocks they name.
. /lib/pdt-guest.sh
. ./params
MS=$(sectors "$META")

log_mark() {   # NAME: a mark in the log, after what came before
    must dmsetup message mlog 0 mark "$1"
}

step "log-writes over \$META, logging to \$EXTRA1 (zeroed by the host)"
must dmsetup create mlog --table "0 $MS log-writes $META $EXTRA1"
log_mark start

step "the kernel formats the zeroed metadata"
pool_up pool /dev/mapper/mlog "$DATA" "$BS" "$NR_BLOCKS"
log_mark formatted

step "t1: thin 0 with some blocks"
must dmsetup message pool 0 "create_thin 0"
log_mark created-0
thin_up thin0 pool 0 "$THIN_SECTORS"
io_list writes-1.txt
must dmsetup message pool 0 "set_transaction_id 0 1"
log_mark t1

step "t2: thin 1, snapshot 2 of thin 0, writes breaking sharing"
must dmsetup message pool 0 "create_thin 1"
thin_up thin1 pool 1 "$THIN_SECTORS"
must dmsetup suspend thin0
must dmsetup message pool 0 "create_snap 2 0"
must dmsetup resume thin0
thin_up thin2 pool 2 "$THIN_SECTORS"
io_list writes-2.txt
must dmsetup message pool 0 "set_transaction_id 1 2"
log_mark t2

step "delete thin 1, write thin 2, discard in thin 0; commit by status"
down thin1
must dmsetup message pool 0 "delete 1"
io_list writes-3.txt
must blkdiscard -o "$DISCARD_OFF" -l "$DISCARD_LEN" /dev/mapper/thin0
# status without --noflush commits the pool
must dmsetup status pool > /dev/null
log_mark status
must dmsetup message pool 0 "set_transaction_id 2 3"
log_mark t3

step "more writes, commit by suspending the pool"
io_list writes-4.txt
must dmsetup suspend thin0
must dmsetup suspend thin2
must dmsetup suspend pool
must dmsetup resume pool
must dmsetup resume thin0
must dmsetup resume thin2
log_mark suspended
must dmsetup message pool 0 "set_transaction_id 3 4"
log_mark t4

step "rounds of one write and one commit each (reuses freed metadata blocks)"
T=4
while read -r _line; do
    [ -n "$_line" ] || continue
    echo "$_line" > round.txt
    io_list round.txt
    must dmsetup message pool 0 "set_transaction_id $T $((T + 1))"
    T=$((T + 1))
    log_mark "t$T"
done < rounds.txt

step "remove everything (the pool commits), then the log"
down thin2 thin0 pool
log_mark removed
dmsetup status mlog > "$OUT/log-status.txt"
down mlog
exit 0
