# Kernel test: `pdt thin_serve` (the host's binary, ./pdt) must refuse a pool
# the kernel holds: the pool is active while it tries to open the devices.
# Files from the host: params, pdt.
. /lib/pdt-guest.sh
. ./params

step "activate the pool"
activate 1

step "thin_serve on the active pool"
chmod +x ./pdt
./pdt thin_serve --metadata-dev "$META" --data-dev "$DATA" --socket /tmp/serve.sock \
    > "$OUT/serve.txt" 2>&1 && fail "thin_serve opened a pool the kernel holds"
echo "rc=$?" >> "$OUT/serve.txt"

step "remove everything"
deactivate 1
exit 0
