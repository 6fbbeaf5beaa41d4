# Kernel test 2, first boot: the kernel formats the zeroed $META, creates
# thin 0, writes, snapshots it as thin 1, writes to both, and removes all.
# Files: params (BS NR_BLOCKS THIN_SECTORS), writes-0.txt (before the
# snapshot), writes-1.txt (after it), reads.txt, and the w-*.bin they name.
. /lib/pdt-guest.sh
. ./params

step "fresh pool on zeroed metadata"
pool_up pool "$META" "$DATA" "$BS" "$NR_BLOCKS"
must dmsetup message pool 0 "create_thin 0"
thin_up thin0 pool 0 "$THIN_SECTORS"
io_list writes-0.txt

step "snapshot thin0 as thin 1"
must dmsetup suspend thin0
must dmsetup message pool 0 "create_snap 1 0"
must dmsetup resume thin0
thin_up thin1 pool 1 "$THIN_SECTORS"
io_list writes-1.txt
must dmsetup message pool 0 "set_transaction_id 0 1"
io_list reads.txt
save_status status.txt pool thin0 thin1

step "remove everything (the pool commits)"
deactivate 1 0
exit 0
