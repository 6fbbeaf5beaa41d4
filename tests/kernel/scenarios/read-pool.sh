# Kernel test 4, second boot: the pool in $META was rebuilt by
# `pdt thin_repair`. The kernel activates thins 1, 2 and 3, reads what
# reads.txt lists, and removes everything (committing).
# Files from the host: params, reads.txt (io_list format).
. /lib/pdt-guest.sh
. ./params

step "activate the repaired pool"
activate 1 2 3
save_status status.txt pool thin1 thin2 thin3

step "read the recovered mappings"
io_list reads.txt

step "remove everything (the pool commits)"
deactivate 3 2 1
exit 0
