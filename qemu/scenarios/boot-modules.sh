# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034,SC2054

# The guest as boot modules, the way QEMU's guest-loader writes them in
# /chosen (multiboot,kernel with bootargs, multiboot,ramdisk): no -initrd.
# The test guest (test=initrd, from the module's bootargs) reads
# linux,initrd-start/-end from its own DT and prints the CRC-32 of what it
# finds there, which must be the ramdisk file's.
DESCRIPTION="test guest and an initramfs as guest-loader boot modules: the guest's DT names the initramfs, CRC-32 matches"
TIMEOUT=30
SCENARIO_OUT=$OUT/scenarios/boot-modules
RAMDISK=$SCENARIO_OUT/ramdisk.bin
APPEND="log=info guest.bootargs=from-the-command-line"
EXPECT_EXIT=0
EXPECT=(
    'platform: module: guest kernel \[0x60000000\.\.0x[0-9a-f]+\) \(module@0x60000000\) bootargs "test=initrd"'
    'platform: module: guest initramfs \[0x62000000\.\.0x620186b3\) \(module@0x62000000\)'
    'platform: initrd: none'
    'vm: initramfs of 97 KiB at IPA 0x4[0-9a-f]+\.\.0x4[0-9a-f]+'
    'GUEST initrd: \[0x4[0-9a-f]+\.\.0x4[0-9a-f]+\) 100019 bytes crc32=0x[0-9a-f]{8} bootargs="test=initrd from-the-command-line"'
    '\[guest\] GUEST result: PASS'
    'vm: the guest powered off'
)

prepare() {
    mkdir -p "$SCENARIO_OUT"
    # 100019 bytes (not a multiple of anything useful) from a fixed seed.
    python3 -c 'import random,sys; random.seed(19); sys.stdout.buffer.write(random.randbytes(100019))' >"$RAMDISK" || return 1
    EXTRA_ARGS+=(
        -device "guest-loader,addr=0x60000000,kernel=$GUEST_BIN,bootargs=test=initrd"
        -device "guest-loader,addr=0x62000000,initrd=$RAMDISK"
    )
}

check() {
    local want got
    want=$(python3 -c 'import sys,zlib; print("0x%08x" % zlib.crc32(open(sys.argv[1],"rb").read()))' "$RAMDISK")
    got=$(grep -o 'GUEST initrd: .* crc32=0x[0-9a-f]*' "$1" | grep -o '0x[0-9a-f]*$')
    [[ $got == "$want" ]] || {
        echo "the guest saw crc32 '$got', the ramdisk file has $want"
        return 1
    }
}
