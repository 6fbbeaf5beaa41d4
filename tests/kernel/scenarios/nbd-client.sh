# Kernel test: the kernel's own NBD client (nbd.ko, Debian's nbd-client)
# against `pdt thin_serve` (the host's binary, ./pdt) serving thin 1 of the
# pool in $META/$DATA: mkfs.ext4, write files, fsck clean, remount and read
# back, disconnect, SIGTERM the server (it commits).
# Files from the host: params, pdt, files.txt (names, md5sum format) and the
# files it names, extras/ (bin/, lib/, modules/, modules.txt, mke2fs.conf).
. /lib/pdt-guest.sh
. ./params
X=/scenario/extras
export LD_LIBRARY_PATH=$X/lib MKE2FS_CONFIG=$X/mke2fs.conf
chmod +x ./pdt "$X"/bin/*

step "load nbd and ext4"
while read -r m; do
    # some (crc32c) are already in for dm-persistent-data
    [ -d "/sys/module/$(echo "${m%.ko}" | tr - _)" ] || must insmod "$X/modules/$m"
done < "$X/modules.txt"

step "thin_serve on the pool"
./pdt thin_serve --metadata-dev "$META" --data-dev "$DATA" --socket /tmp/s \
    > "$OUT/serve.txt" 2>&1 &
srv=$!
i=0
while [ ! -S /tmp/s ]; do
    i=$((i + 1))
    [ $i -le 100 ] || fail "thin_serve made no socket: $(cat "$OUT/serve.txt")"
    sleep 0.1
done

step "connect the kernel's client"
must "$X/bin/nbd-client" -unix /tmp/s /dev/nbd0 -N 1 -b 4096
[ "$(blockdev --getsize64 /dev/nbd0)" -gt 0 ] || fail "/dev/nbd0 has no size"

step "mkfs.ext4 and write the files"
must "$X/bin/mkfs.ext4" -q -F /dev/nbd0
mkdir -p /tmp/mnt
must mount -t ext4 /dev/nbd0 /tmp/mnt
while read -r _ f; do must cp "$f" /tmp/mnt/; done < files.txt
must sync
must umount /tmp/mnt

step "fsck"
must "$X/bin/e2fsck" -fn /dev/nbd0

step "mount again and read back"
echo 3 > /proc/sys/vm/drop_caches
must mount -t ext4 -o ro /dev/nbd0 /tmp/mnt
(cd /tmp/mnt && md5sum -c /scenario/files.txt) || fail "md5 differ"
while read -r _ f; do must cp "/tmp/mnt/$f" "$OUT/$f"; done < files.txt
must umount /tmp/mnt

step "disconnect and stop the server"
must "$X/bin/nbd-client" -d /dev/nbd0
must kill -TERM $srv
wait $srv
rc=$?
[ $rc -eq 0 ] || fail "thin_serve exited with $rc: $(cat "$OUT/serve.txt")"
exit 0
