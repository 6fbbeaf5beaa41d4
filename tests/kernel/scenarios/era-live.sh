# Kernel era test: the era target on metadata `pdt era_exec` formatted. The
# kernel tracks writes through three eras, takes a metadata snapshot, sees
# more writes; our era_invalidate reads the live metadata device's snapshot
# while the target runs. Removing the target commits.
# Files from the host: era.params (BS NR_BLOCKS), writes-1.txt..writes-4.txt
# (origin blocks to write, one per line), pdt (our binary).
. /lib/pdt-guest.sh
. ./era.params
chmod +x ./pdt

write_blocks() {
    for _b in $(cat "$1"); do
        must dd if=/dev/zero of=/dev/mapper/era bs=$((BS * 512)) seek="$_b" count=1 oflag=direct status=none
    done
}

step "era target on pdt's metadata"
must dmsetup create era --table "0 $((BS * NR_BLOCKS)) era $META $DATA $BS"
save_status status-0.txt era

step "writes in three eras"
write_blocks writes-1.txt
must dmsetup message era 0 checkpoint
write_blocks writes-2.txt
must dmsetup message era 0 checkpoint
write_blocks writes-3.txt

step "metadata snapshot, then more writes"
must dmsetup message era 0 take_metadata_snap
save_status status-snap.txt era
write_blocks writes-4.txt
save_status status-1.txt era

step "pdt era_invalidate on the live metadata snapshot"
_era=$(dmsetup status --noflush era | awk '{print $6}')
_n=0
while [ "$_n" -le $((_era + 1)) ]; do
    must ./pdt era_invalidate --metadata-snapshot --written-since "$_n" -o "$OUT/inv-$_n.xml" "$META"
    _n=$((_n + 1))
done

step "drop the snapshot and remove the target (it commits)"
must dmsetup message era 0 drop_metadata_snap
down era
exit 0
