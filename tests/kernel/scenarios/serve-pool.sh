# Kernel test: the pool in $META/$DATA was written by `pdt thin_serve` (over
# NBD, thins 1 and 2 and snapshot 3 of 1). The kernel activates it, reads
# each volume whole (reads.txt), writes (writes.txt), and commits on removal;
# the host then serves the result again and reads the kernel's writes.
# Files from the host: params, reads.txt, writes.txt and the files it names.
. /lib/pdt-guest.sh
. ./params

step "activate the pool thin_serve wrote"
activate 1 2 3

step "read every volume"
io_list reads.txt

step "the kernel writes"
io_list writes.txt

step "remove everything (the pool commits)"
deactivate 3 2 1
exit 0
