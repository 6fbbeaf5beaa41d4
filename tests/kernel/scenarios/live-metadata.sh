# Kernel test: live metadata. With a pool active on $META (the kernel holds
# the device), every pdt writer must refuse it and leave it intact, as
# Debian's thin_restore does; readers read it, warning on stderr that the
# answer may be inconsistent unless -m reads the metadata snapshot.
# Files from the host: pdt (the binary under test), pool.xml.
. /lib/pdt-guest.sh
P=./pdt
chmod +x "$P"

step "a pool on the kernel-formatted metadata, holding a metadata snapshot"
pool_up pool "$META" "$DATA" 128 1024
must dmsetup message pool 0 "create_thin 1"
must dmsetup message pool 0 reserve_metadata_snap

step "a pool to repair from, in a file"
must dd if=/dev/zero of=/tmp/src.md bs=4096 count=1024 status=none
must "$P" thin_restore -i pool.xml -o /tmp/src.md

step "Debian's thin_restore refuses the live metadata"
if thin_restore -i pool.xml -o "$META" 2> "$OUT/debian-restore.txt"; then
    fail "Debian's thin_restore wrote the live metadata"
fi

step "pdt's writers refuse it"
refused() {
    _name=$1
    shift
    echo "+ (should be refused) $*"
    if "$@" < /dev/null > /dev/null 2> "$OUT/$_name.txt"; then
        fail "unexpectedly succeeded: $*"
    fi
}
refused restore "$P" thin_restore -i pool.xml -o "$META"
refused repair "$P" thin_repair -i /tmp/src.md -o "$META"
refused clear "$P" thin_check --clear-needs-check-flag "$META"
refused auto-repair "$P" thin_check --auto-repair "$META"
refused trim "$P" thin_trim --metadata-dev "$META" --data-dev "$DATA"
refused exec "$P" thin_exec "$META"

step "pdt's readers read it, warning without -m"
run "$P" thin_dump "$META" > "$OUT/dump.xml" 2> "$OUT/dump-live.txt"
echo "rc=$?" >> "$OUT/dump-live.txt"
run "$P" thin_dump -m "$META" > "$OUT/dump-snap.xml" 2> "$OUT/dump-snap.txt"
echo "rc=$?" >> "$OUT/dump-snap.txt"
run "$P" thin_ls "$META" > /dev/null 2> "$OUT/ls-live.txt"
run "$P" thin_check "$META" > /dev/null 2> "$OUT/check-live.txt"

step "Debian's readers on the live metadata: refused without -m"
for t in "thin_check" "thin_dump" "thin_ls" "thin_dump -m" "thin_check -m"; do
    $t "$META" > /dev/null 2> /tmp/err.txt
    echo "== $t: rc=$? $(head -2 /tmp/err.txt | tr '\n' ' ')" >> "$OUT/debian-readers.txt"
done

step "remove the pool (it commits)"
must dmsetup message pool 0 release_metadata_snap
down pool
exit 0
