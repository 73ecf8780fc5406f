# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="an arm64 Image guest runs at its header's text_offset with its code intact (test=image: placement and checksum)"
TIMEOUT=40
EXPECT_EXIT=0
EXPECT=(
    'vm: .* arm64 Image of [0-9]+ KiB at 0x40080000, entry 0x40080000'
    '\[guest\] GUEST boot: entered at EL1, running at EL1, image at 0x40080000'
    '\[guest\] GUEST image: arm64 Image loaded at 0x40080000, expected 0x40080000 \(RAM at 0x40000000, text_offset 0x80000\) ok'
    '\[guest\] GUEST image: FNV-1a of the first [0-9]+ bytes (0x[0-9a-f]+), expected \1 ok'
    '\[guest\] GUEST result: PASS'
    'stopping: system off'
)

# The test guest with text_offset (u64 at byte 8) = 0x80000, the value
# older arm64 kernels use.
prepare() {
    local img=$OUT/guest-text-offset.bin
    cp "$GUEST_BIN" "$img"
    printf '\x00\x00\x08\x00\x00\x00\x00\x00' | dd of="$img" bs=1 seek=8 count=8 conv=notrunc status=none
    INITRD=$img
    APPEND="guest.bootargs=test=image -- $(image_sum "$img")" || return 1
}
