# Kernel test 4: the pool in $META was built by `pdt thin_restore` from XML.
# The kernel activates thins 1, 2 (snapshot of 1) and 3, reads the restored
# mappings, writes (breaking sharing), holds a metadata snapshot, writes
# again, and commits on removal.
# Files from the host: params, reads.txt, writes.txt, writes-after-snap.txt,
# reads-after.txt (io_list format), and the w-*.bin they name.
. /lib/pdt-guest.sh
. ./params

step "activate the pool pdt restored"
activate 1 2 3
save_status status-before.txt pool thin1 thin2 thin3

step "read the restored mappings"
io_list reads.txt

step "write, breaking sharing between thin1 and its snapshot thin2"
io_list writes.txt

step "hold a metadata snapshot, then write more"
must dmsetup message pool 0 reserve_metadata_snap
io_list writes-after-snap.txt
io_list reads-after.txt
save_status status-after.txt pool thin1 thin2 thin3

step "remove everything (the pool commits)"
deactivate 3 2 1
exit 0
