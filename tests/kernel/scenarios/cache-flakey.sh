# Kernel cache test 2: metadata writes fail during a cache commit.
# The cache's metadata sits on dm-flakey over $META. With flakey passing
# everything, writes dirty some cache blocks and a suspend commits them
# (transaction 1, statistics saved). Then flakey fails every write, more
# I/O changes the statistics, and the suspend's commit fails. What is left
# on $META must be transaction 1.
# Files: cache-params, writes-1.txt, reads-2.txt.
. /lib/pdt-guest.sh
. ./cache-params
MS=$(sectors "$META")

step "cache over flakey(meta), flakey passing everything"
must dmsetup create mflakey --table "0 $MS flakey $META 0 3600 0"
must dmsetup create cache --table \
    "0 $ORIGIN_SECTORS cache /dev/mapper/mflakey $DATA $EXTRA1 $BS $FEATURES smq 2 migration_threshold 0"
io_list writes-1.txt
must dmsetup suspend cache
must dmsetup resume cache
save_status status-1.txt cache

step "flakey now fails every write"
must dmsetup reload mflakey --table "0 $MS flakey $META 0 0 3600 1 error_writes"
must dmsetup suspend mflakey
must dmsetup resume mflakey

step "more reads, then a commit that fails"
io_list reads-2.txt
save_status status-2.txt cache
# the suspend still succeeds; the cache reports the failure in dmesg
run dmsetup suspend cache
save_status status-3.txt cache

step "tear down"
run dmsetup remove cache
run dmsetup remove mflakey
dmsetup ls > "$OUT/left-over.txt"
exit 0
