# Batch commands for the gdb scenario (run after scripts/debug stopped at
# rust_entry): stop at the guest's first instruction, single-step it, decode
# stage 2 there, then stop in the hypervisor's exit handler and use the
# project's commands.
break *0x40000000
continue
echo GDB-CHECK guest entry reached\n
info registers pc
stepi
echo GDB-CHECK stepped\n
info registers pc
hv-stage2 0x40000000
hv-stage2 0x09000000
delete
break hypervisor::vm::machine::vcpu_exit
continue
echo GDB-CHECK exit handler reached\n
hv-vcpu
continue
echo GDB-CHECK second exit\n
hv-exits
delete
break hypervisor::vm::machine::apply_bar_event
# The guest's Memory Space Enable maps BAR0 (32-bit), then BAR2 (64-bit).
continue
continue
finish
echo GDB-CHECK BAR mapped\n
hv-stage2 0x8000000000
