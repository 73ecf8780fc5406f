# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="ivshmem-plain with a file-backed 64 MiB BAR passed through: the guest's pattern reaches the host file"
TIMEOUT=90
INITRD=$GUEST_BIN
SMP=$WC_SMP
APPEND="pci.passthrough=1af4:1110 guest.bootargs=test=wc -- $WC_GUEST_ARGS"
IVSHMEM_FILE=$OUT/scenarios/passthrough-ivshmem/ivshmem.bin
EXTRA_ARGS=(-object "memory-backend-file,size=64M,share=on,mem-path=$IVSHMEM_FILE,id=hostmem"
    "${IVSHMEM_DEVICE[@]}")
EXPECT_EXIT=0
EXPECT=(
    'pci: 00:02\.0 1af4:1110 class 050000 -> passthrough'
    'pci:   BAR2 64-bit prefetchable 0x[0-9a-f]+ size 64 MiB policy guest-choice'
    'WARNING: 00:02\.0 may master the bus'
    'WC pci 00:00\.0 1af4:1110'
    'WC unaligned probe: judged \(Device must fault, Normal must not\)'
    'WC-RESULT bdf=00:00\.0 bar=2 policy=guest-choice s1=normal-nc effective=normal-nc .* unaligned=ok .* verify=ok'
    'WC-RESULT bdf=00:00\.0 bar=2 policy=guest-choice s1=device-ngnre effective=device-ngnre .* unaligned=fault'
    'WC-SUMMARY ok'
)
REJECT=('panicked at' 'verify=FAIL')

prepare() {
    mkdir -p "${IVSHMEM_FILE%/*}"
    rm -f "$IVSHMEM_FILE"
}

# The guest's last integrity pass (Normal-WB, type index 4) leaves its
# pattern in the first 16 MiB of BAR2: the host's file must hold it too.
check() {
    python3 - "$IVSHMEM_FILE" <<'PY'
import struct, sys
path = sys.argv[1]
def rotl(v, n):
    return ((v << n) | (v >> (64 - n))) & (2**64 - 1)
def pattern(type_index, offset):
    return 0x5a00000000000000 ^ ((type_index + 1) << 48) ^ rotl(offset, 17) ^ offset
with open(path, "rb") as f:
    data = f.read(16 << 20)
if len(data) < (16 << 20):
    sys.exit("the ivshmem backing file is shorter than 16 MiB")
bad = [off for off in range(0, 16 << 20, 4096 + 8)
       if struct.unpack_from("<Q", data, off)[0] != pattern(4, off)]
if bad:
    sys.exit("host file lacks the guest's pattern at %d offsets, first %#x" % (len(bad), bad[0]))
PY
}
