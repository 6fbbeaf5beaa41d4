# Kernel test 2, second boot: the pool the kernel formatted in the first boot
# has since been changed by `pdt thin_exec` (thin 7 and snapshot 8 created,
# thin 1 deleted). Activate it again, check thin 1 is gone, read everything,
# write more, remove all.
# Files: params (BS NR_BLOCKS THIN_SECTORS), reads.txt, writes.txt,
# reads-after.txt, and the w-*.bin they name.
. /lib/pdt-guest.sh
. ./params

step "activate the pool pdt changed"
activate 0 7 8
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
deactivate 8 7 0
exit 0
