# Kernel test 1: the pool in $META was formatted and filled by `pdt thin_exec`.
# The kernel activates it with thins 1, 2 (thin) and 3 (snapshot of 1), reads
# what pdt provisioned, writes new blocks, and commits on removal.
# Files from the host: params (BS NR_BLOCKS THIN_SECTORS), reads.txt,
# writes.txt, reads-after.txt (io_list format), and the w-*.bin they name.
. /lib/pdt-guest.sh
. ./params

step "activate the pool pdt wrote"
activate 1 2 3
save_status status-before.txt pool thin1 thin2 thin3

step "read pdt's mappings"
io_list reads.txt

step "write to thin2 and to the snapshot thin3"
io_list writes.txt
io_list reads-after.txt
save_status status-after.txt pool thin1 thin2 thin3

step "remove everything (the pool commits)"
deactivate 3 2 1
exit 0
