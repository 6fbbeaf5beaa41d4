# Helpers for scenarios, installed in the guest as /lib/pdt-guest.sh.
#   . /lib/pdt-guest.sh
#
#   step TEXT...            marker line "@@PDT STEP TEXT"
#   fail TEXT...            marker line "@@PDT FAIL TEXT", then exit 1
#   run CMD...              print "+ CMD" and run it, returning its status
#   must CMD...             like run; fail the scenario if CMD fails
#   mustfail CMD...         like run; fail the scenario if CMD succeeds
#   sectors DEV             size of DEV in 512-byte sectors
#   zero_dev DEV            write zeroes over the whole of DEV
#   pool_up NAME META DATA BLOCK_SECTORS NR_BLOCKS [ARGS...]
#                           thin-pool NAME of NR_BLOCKS data blocks, ARGS are
#                           feature args (e.g. skip_block_zeroing)
#   thin_up NAME POOL DEV SECTORS   activate thin device DEV of POOL as NAME
#   activate ID...          pool_up "pool" over $META and $DATA (the params'
#                           BS and NR_BLOCKS), and thin_up "thinID" of each ID
#                           (THIN_SECTORS)
#   deactivate ID...        down "thinID" of each ID, in the order given, then "pool"
#   down NAME...            dmsetup remove, in the order given (must succeed)
#   pool_field NAME N       field N (1-based, after the target name) of the
#                           pool's status, read with --noflush
#   is_zero FILE            true when FILE holds only zero bytes
#   io_list FILE            reads and writes listed in FILE, in 4 KiB units:
#                             r NAME OFFSET COUNT OUTNAME   /dev/mapper/NAME -> $OUT/OUTNAME
#                             w NAME OFFSET INFILE          INFILE -> /dev/mapper/NAME
#   save_status FILE NAME...  append "NAME <dmsetup status --noflush>" lines to $OUT/FILE

step()     { echo "@@PDT STEP $*"; }
fail()     { echo "@@PDT FAIL $*"; exit 1; }
run()      { echo "+ $*"; "$@"; }
must()     { echo "+ $*"; "$@" || fail "failed (rc=$?): $*"; }
mustfail() { echo "+ (should fail) $*"; ! "$@" || fail "unexpectedly succeeded: $*"; }
sectors()  { blockdev --getsz "$1"; }

zero_dev() {
    dd if=/dev/zero of="$1" bs=64k count=$(( $(sectors "$1") / 128 )) oflag=direct status=none
}

pool_up() {
    _name=$1 _meta=$2 _data=$3 _bs=$4 _nr=$5
    shift 5
    _feat=
    [ $# -gt 0 ] && _feat="$# $*" || _feat=0
    must dmsetup create "$_name" --table "0 $((_bs * _nr)) thin-pool $_meta $_data $_bs 0 $_feat"
}

thin_up() {
    must dmsetup create "$1" --table "0 $4 thin /dev/mapper/$2 $3"
}

down() {
    for _d in "$@"; do must dmsetup remove "$_d"; done
}

activate() {
    pool_up pool "$META" "$DATA" "$BS" "$NR_BLOCKS"
    for _t in "$@"; do thin_up "thin$_t" pool "$_t" "$THIN_SECTORS"; done
}

deactivate() {
    for _t in "$@"; do down "thin$_t"; done
    down pool
}

pool_field() {
    dmsetup status --noflush "$1" | awk -v n="$2" '{ print $(3 + n) }'
}

is_zero() {
    [ "$(tr -d '\000' < "$1" | wc -c)" -eq 0 ]
}

io_list() {
    while read -r _op _name _off _a _b; do
        case $_op in
            r) dd if="/dev/mapper/$_name" of="$OUT/$_b" bs=4096 skip="$_off" count="$_a" \
                   iflag=direct status=none || fail "read $_name at $_off (x4KiB) failed" ;;
            w) dd if="$_a" of="/dev/mapper/$_name" bs=4096 seek="$_off" oflag=direct \
                   conv=notrunc status=none || fail "write $_a to $_name at $_off (x4KiB) failed" ;;
            ''|'#'*) ;;
            *) fail "io_list: bad line: $_op $_name $_off $_a $_b" ;;
        esac
    done < "$1"
}

save_status() {
    _file=$1
    shift
    for _d in "$@"; do
        _st=$(dmsetup status --noflush "$_d") || fail "dmsetup status $_d failed"
        echo "$_d $_st" >> "$OUT/$_file"
    done
}
