# Kernel cache test 1: the metadata in $META was written by `pdt cache_exec`.
# dm-cache activates it with $DATA as the fast device and $EXTRA1 as the
# origin (writeback mode, smq, migration_threshold 0 so that nothing is
# promoted, demoted or written back behind the test's back), serves reads
# from the cache blocks pdt mapped and from the origin elsewhere, takes
# writes, and commits on removal.
# Files: cache-params (BS ORIGIN_SECTORS FEATURES), reads.txt, writes.txt,
# reads-after.txt and the w-*.bin they name.
. /lib/pdt-guest.sh
. ./cache-params

step "activate the cache pdt wrote"
must dmsetup create cache --table \
    "0 $ORIGIN_SECTORS cache $META $DATA $EXTRA1 $BS $FEATURES smq 2 migration_threshold 0"
save_status status-before.txt cache

step "read through the cache"
io_list reads.txt

step "write, and read back"
io_list writes.txt
io_list reads-after.txt
save_status status-after.txt cache

step "remove the cache (it commits, clean)"
down cache
exit 0
