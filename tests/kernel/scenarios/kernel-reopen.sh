# Kernel test 2, second boot: the pool the kernel formatted in the first boot
# has since been changed by `pdt thin_exec` (thin 7 and snapshot 8 created,
# thin 1 deleted). Activate it again, check thin 1 is gone, read everything,
# write more, remove all.
# Files: params (BS NR_BLOCKS THIN_SECTORS), reads.txt, writes.txt,
# reads-after.txt, and the w-*.bin they name.
. /lib/pdt-guest.sh
. ./params

step "activate the pool pdt changed"
pool_up pool "$META" "$DATA" "$BS" "$NR_BLOCKS"
for t in 0 7 8; do thin_up thin$t pool $t "$THIN_SECTORS"; done
mustfail dmsetup create thin1 --table "0 $THIN_SECTORS thin /dev/mapper/pool 1"
dmsetup remove thin1 2>/dev/null
save_status status-before.txt pool thin0 thin7 thin8

step "read old and new mappings"
io_list reads.txt

step "write more"
io_list writes.txt
io_list reads-after.txt
save_status status-after.txt pool thin0 thin7 thin8

step "remove everything (the pool commits)"
down thin8 thin7 thin0 pool
exit 0
