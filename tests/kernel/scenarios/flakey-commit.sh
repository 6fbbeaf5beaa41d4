# Kernel test 3: metadata writes fail in the middle of a commit.
# The pool sits on dm-flakey over $META. Transaction 1 is committed with
# flakey passing everything; then flakey fails every write, new blocks are
# written and a commit is forced with "set_transaction_id 1 2". The metadata
# left on $META must be transaction 1 exactly.
# Files: params (BS NR_BLOCKS THIN_SECTORS), writes-1.txt (committed),
# writes-2.txt (lost), reads.txt (on the read-only reactivation: rthin0).
. /lib/pdt-guest.sh
. ./params
MS=$(sectors "$META")

step "pool over flakey(meta), flakey passing everything"
must dmsetup create mflakey --table "0 $MS flakey $META 0 3600 0"
pool_up pool /dev/mapper/mflakey "$DATA" "$BS" "$NR_BLOCKS"
must dmsetup message pool 0 "create_thin 0"
thin_up thin0 pool 0 "$THIN_SECTORS"
io_list writes-1.txt
must dmsetup message pool 0 "set_transaction_id 0 1"
save_status status-1.txt pool thin0

step "flakey now fails every write"
must dmsetup reload mflakey --table "0 $MS flakey $META 0 0 3600 1 error_writes"
must dmsetup suspend mflakey
must dmsetup resume mflakey

step "write more blocks, then force a commit"
# status without --noflush would commit too. The pool's periodic commit may
# fail first (on a loaded host it does): these writes are lost either way,
# and may then be refused.
( io_list writes-2.txt ) || echo "writes after the failure refused: the pool already failed a commit"
save_status status-2.txt pool thin0
# the pool ignores the commit's result in its message handler
run dmsetup message pool 0 "set_transaction_id 1 2"
sleep 1
save_status status-3.txt pool thin0

step "tear down (the pool cannot commit any more)"
run dmsetup remove thin0
run dmsetup remove pool
run dmsetup remove mflakey
dmsetup ls > "$OUT/left-over.txt"

step "read-only reactivation straight on \$META"
pool_up rpool "$META" "$DATA" "$BS" "$NR_BLOCKS" read_only
thin_up rthin0 rpool 0 "$THIN_SECTORS"
save_status status-ro.txt rpool rthin0
io_list reads.txt
down rthin0 rpool
exit 0
