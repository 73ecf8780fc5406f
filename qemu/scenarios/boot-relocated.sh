# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="boot an Image whose header asks to be loaded 16 MiB into RAM"
TIMEOUT=30
APPEND="log=debug"
EXPECT_EXIT=0
# QEMU honours text_offset only when image_size is non-zero, and adds 2 MiB
# only to offsets below 4 KiB, so this Image lands at 0x40000000 + 0x1000000.
EXPECT=(
    'loaded at 0x41000000'
    'stopping: system off'
)

# Copy the Image and patch its header: text_offset (u64 little-endian at
# byte 8) = 0x1000000.
prepare() {
    local img=$OUT/hypervisor-reloc.bin
    cp "$HV_BIN" "$img"
    printf '\x00\x00\x00\x01\x00\x00\x00\x00' |
        dd of="$img" bs=1 seek=8 count=8 conv=notrunc status=none
    KERNEL=$img
}
