# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

# Debian's U-Boot for QEMU virt (u-boot-qemu) starts at EL2 and runs the
# boot.scr that scripts/image writes, as a board's U-Boot would. Nothing is
# typed: U-Boot's environment comes from the second flash bank (its
# CONFIG_ENV_ADDR, 0x4000000), made from U-Boot's built-in defaults plus
# bootdelay=0, hv_preloaded=1 and bootcmd="source ${scriptaddr}". QEMU's
# loader device puts boot.scr, Image and guest.bin at U-Boot's scriptaddr,
# kernel_addr_r and ramdisk_addr_r. booti then hands the hypervisor the DT
# QEMU gave U-Boot (fdt_addr), with the guest as initrd and bootargs set.
# (scripts/lib/scenario.sh always passes -kernel; with -bios QEMU only
# offers that file on fw_cfg, which this bootcmd never reads.)

DESCRIPTION="U-Boot (Debian u-boot-qemu) at EL2 runs boot.scr: booti Image + guest initrd + DT"
TIMEOUT=60
MACHINE=virt,virtualization=on,secure=off,gic-version=3
CPU=max
MEM=1G
# One CPU: this checks booti, and the guest's unaligned probe is then
# reported, not judged (QEMU raises no alignment fault with one CPU).
SMP=1
EXPECT_EXIT=0
EXPECT=(
    'Loading Environment from Flash\.\.\. OK'
    '## Executing script at'
    'hypervisor: Image and guest already in memory'
    'Starting kernel'
    'hypervisor .* at EL2, loaded at 0x'
    'platform: initrd: \[0x[0-9a-f]+\.\.0x[0-9a-f]+\)'
    'platform: bootargs: "log=debug pci.passthrough=1af4:1110,1234:1111"'
    'pci: 00:02\.0 1af4:1110 class 050000 -> passthrough'
    'WC-RESULT bdf=00:00\.0 bar=2 policy=guest-choice s1=normal-nc effective=normal-nc .* verify=ok'
    'WC unaligned probe: reported, not judged: 1 CPU in the device tree'
    'WC-SUMMARY ok'
    'vm: the guest powered off'
    'platform: memreserve:'
    'stopping: system off'
)

UBOOT_BIN=/usr/lib/u-boot/qemu_arm64/u-boot.bin
UBOOT_DIR=$OUT/scenarios/uboot-booti

# uboot_default_env BIN: U-Boot's built-in environment, one name=value a
# line. It is the NUL-separated block that starts with bootcmd= and ends
# with two NULs; a flash environment replaces it whole, so it is restated.
uboot_default_env() {
    local off
    off=$(grep -abo -m1 'bootcmd=run distro_bootcmd' "$1" | head -n1 | cut -d: -f1)
    [[ -n $off ]] || return 1
    tail -c +$((off + 1)) "$1" | head -c 65536 | tr '\0' '\n' | sed '/^$/,$d'
}

# uboot_var ENVFILE NAME: a variable's value in an environment file.
uboot_var() {
    sed -n "s/^$2=//p" "$1" | head -n1
}

prepare() {
    [[ -f $UBOOT_BIN ]] || {
        echo "$UBOOT_BIN not found (Debian package u-boot-qemu)"
        return 1
    }
    mkdir -p "$UBOOT_DIR"
    "$HV_ROOT/scripts/image" --no-build --out "$UBOOT_DIR" --bootargs "log=debug $DEMO_PASSTHROUGH" || return 1

    local env=$UBOOT_DIR/env.txt var
    uboot_default_env "$UBOOT_BIN" | grep -v -e '^bootcmd=' -e '^bootdelay=' >"$env"
    for var in scriptaddr kernel_addr_r ramdisk_addr_r fdt_addr; do
        [[ -n $(uboot_var "$env" "$var") ]] || {
            echo "no $var in U-Boot's built-in environment"
            return 1
        }
    done
    # shellcheck disable=SC2016 # U-Boot expands ${scriptaddr}.
    printf '%s\n' 'bootdelay=0' 'hv_preloaded=1' 'bootcmd=source ${scriptaddr}' >>"$env"
    # CONFIG_ENV_SIZE 0x40000 at the start of the 64 MiB second flash bank.
    mkenvimage -s 0x40000 -o "$UBOOT_DIR/flash1.img" "$env" || return 1
    truncate -s 64M "$UBOOT_DIR/flash1.img"

    UBOOT_KERNEL_ADDR=$(uboot_var "$env" kernel_addr_r)
    EXTRA_ARGS+=("${IVSHMEM_RAM[@]}" "${IVSHMEM_DEVICE[@]}" "${BOCHS_DEVICE[@]}"
        -bios "$UBOOT_BIN"
        -drive "if=pflash,unit=1,format=raw,file=$UBOOT_DIR/flash1.img"
        -device "loader,file=$UBOOT_DIR/boot.scr,addr=$(uboot_var "$env" scriptaddr),force-raw=on"
        -device "loader,file=$UBOOT_DIR/Image,addr=$UBOOT_KERNEL_ADDR,force-raw=on"
        -device "loader,file=$UBOOT_DIR/guest.bin,addr=$(uboot_var "$env" ramdisk_addr_r),force-raw=on"
    )
}

check() {
    local log=$1 load
    load=$(sed -n 's/.*hypervisor .* at EL2, loaded at \(0x[0-9a-f]*\).*/\1/p' "$log" | head -n1)
    # booti runs the Image where U-Boot loaded it (the header allows any
    # 2 MiB aligned address), not where -kernel would put it.
    [[ $load == "$(printf '0x%x' "$UBOOT_KERNEL_ADDR")" ]] || {
        echo "hypervisor loaded at '$load', expected kernel_addr_r $UBOOT_KERNEL_ADDR"
        return 1
    }
    [[ $load != 0x40200000 ]] || {
        echo "loaded at -kernel's address 0x40200000: U-Boot did not load it"
        return 1
    }
}
