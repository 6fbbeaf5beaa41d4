# Kernel thin_migrate test: the kernel formats a pool and writes known data
# into two thin volumes and a snapshot of one (then overwrites and discards
# blocks of both), and reads every volume back whole. Our thin_migrate's
# live form copies the snapshot to a file and the origin to $EXTRA1 (each
# under its own metadata snapshot, released after), and turns the
# snapshot's copy into the origin's with --delta-id. Removing the devices
# commits, for the host's offline thin_migrate.
# Files from the host: migrate.params (BS NR_BLOCKS THIN_SECTORS),
# writes-1.txt to writes-3.txt (io lists), the blocks they write, pdt.
. /lib/pdt-guest.sh
. ./migrate.params
P=./pdt
chmod +x "$P"

step "a pool on blank metadata, thins 1 and 3"
pool_up pool "$META" "$DATA" "$BS" "$NR_BLOCKS"
must dmsetup message pool 0 "create_thin 1"
must dmsetup message pool 0 "create_thin 3"
thin_up thin1 pool 1 "$THIN_SECTORS"
thin_up thin3 pool 3 "$THIN_SECTORS"
io_list writes-1.txt

step "snapshot 2 of 1; then writes and discards on both"
must dmsetup suspend thin1
must dmsetup message pool 0 "create_snap 2 1"
must dmsetup resume thin1
thin_up thin2 pool 2 "$THIN_SECTORS"
io_list writes-2.txt
# Whole blocks 40..43 of the origin and 8..9 of the snapshot: unmapped.
must blkdiscard -o $((40 * BS * 512)) -l $((4 * BS * 512)) /dev/mapper/thin1
must blkdiscard -o $((8 * BS * 512)) -l $((2 * BS * 512)) /dev/mapper/thin2

step "what the kernel serves"
for _t in 1 2 3; do
    must dd if=/dev/mapper/thin$_t of="$OUT/thin$_t.img" bs=$((BS * 512)) iflag=direct status=none
done

step "pdt thin_migrate, live: under a metadata snapshot it releases"
must "$P" thin_migrate -q --source-dev /dev/mapper/thin2 --dest-file "$OUT/live2.img"
must "$P" thin_migrate -q --source-dev /dev/mapper/thin1 --dest-dev "$EXTRA1"
must cp "$OUT/live2.img" "$OUT/delta.img"
must "$P" thin_migrate -q --source-dev /dev/mapper/thin1 --delta-id 2 --dest-file "$OUT/delta.img"
pool_field pool 4 > "$OUT/held-after.txt"

step "an interrupted live copy: whenever the signal lands, no snapshot is left held"
"$P" thin_migrate -q --source-dev /dev/mapper/thin1 --dest-file /tmp/int.img --buffer-size-meg 1 &
_pid=$!
sleep 0.3
kill -INT "$_pid"
wait "$_pid"
echo "rc=$?" > "$OUT/int-rc.txt"
pool_field pool 4 >> "$OUT/int-rc.txt"

step "a snapshot already held: refused, and left held"
must dmsetup message pool 0 reserve_metadata_snap
if "$P" thin_migrate -q --source-dev /dev/mapper/thin3 --dest-file "$OUT/no.img" 2> "$OUT/held-err.txt"; then
    fail "thin_migrate ran with a snapshot held by another"
fi
must dmsetup message pool 0 release_metadata_snap

step "the pool is no thin volume"
if "$P" thin_migrate -q --source-dev /dev/mapper/pool --dest-file /tmp/no.img 2> "$OUT/not-thin.txt"; then
    fail "thin_migrate copied a pool"
fi

step "thin 4 over an external origin (the origin's copy on $EXTRA1), partly overwritten"
must dmsetup message pool 0 "create_thin 4"
must dmsetup create thin4 --table "0 $THIN_SECTORS thin /dev/mapper/pool 4 $EXTRA1"
io_list writes-3.txt
must dd if=/dev/mapper/thin4 of="$OUT/thin4.img" bs=$((BS * 512)) iflag=direct status=none
must "$P" thin_migrate -q --source-dev /dev/mapper/thin4 --dest-file "$OUT/live4.img"
if "$P" thin_migrate -q --source-dev /dev/mapper/thin4 --delta-id 1 --dest-file "$OUT/live4.img" 2> "$OUT/ext-delta.txt"; then
    fail "thin_migrate --delta-id ran on a volume with an external origin"
fi
down thin4

step "remove the devices (the pool commits)"
deactivate 1 2 3
exit 0
