//! `qemu` — layer 6: the QEMU driver. Builds the qemu command line per arch, prepares disks
//! with qemu-img (basedisk + copy-on-write diffdisk), runs qemu and stops it through QMP.

pub mod cmdline;
pub mod machine;
pub mod qmp;
pub mod vm;
