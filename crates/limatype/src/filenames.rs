//! Well-known file and directory names, as Lima uses them, so an instance directory looks the
//! same to both implementations.

/// `$LIMA_HOME` default, under the user's home.
pub const DOT_LIMA: &str = ".lima";

// Directories under $LIMA_HOME.
pub const CONFIG_DIR: &str = "_config";
pub const DISKS_DIR: &str = "_disks";
pub const NETWORKS_DIR: &str = "_networks";
pub const TEMPLATES_DIR: &str = "_templates";
pub const CACHE_DIR: &str = "_cache";

// Files under $LIMA_HOME/_config.
pub const USER_PRIVATE_KEY: &str = "user";
pub const USER_PUBLIC_KEY: &str = "user.pub";
pub const NETWORKS_CONFIG: &str = "networks.yaml";
pub const DEFAULT_YAML: &str = "default.yaml";
pub const OVERRIDE_YAML: &str = "override.yaml";

// Files in an instance directory.
pub const LIMA_YAML: &str = "lima.yaml";
pub const LIMA_VERSION: &str = "lima-version";
pub const CIDATA_ISO: &str = "cidata.iso";
pub const CIDATA_ISO_DIR: &str = "cidata";
pub const CLOUD_CONFIG: &str = "cloud-config.yaml";
pub const IMAGE: &str = "image";
pub const DISK: &str = "disk";
pub const ISO: &str = "iso";
pub const BASE_DISK: &str = "basedisk";
pub const DIFF_DISK: &str = "diffdisk";
pub const KERNEL: &str = "kernel";
pub const KERNEL_CMDLINE: &str = "kernel.cmdline";
pub const INITRD: &str = "initrd";
pub const QMP_SOCK: &str = "qmp.sock";
pub const SERIAL_LOG: &str = "serial.log";
pub const SERIAL_SOCK: &str = "serial.sock";
pub const SERIAL_PCI_LOG: &str = "serialp.log";
pub const SERIAL_PCI_SOCK: &str = "serialp.sock";
pub const SERIAL_VIRTIO_LOG: &str = "serialv.log";
pub const SERIAL_VIRTIO_SOCK: &str = "serialv.sock";
pub const SSH_SOCK: &str = "ssh.sock";
pub const SSH_CONFIG: &str = "ssh.config";
pub const VNC_DISPLAY_FILE: &str = "vncdisplay";
pub const VNC_PASSWORD_FILE: &str = "vncpassword";
pub const GUEST_AGENT_SOCK: &str = "ga.sock";
pub const VIRTIO_PORT: &str = "io.lima-vm.guest_agent.0";
pub const HOST_AGENT_PID: &str = "ha.pid";
pub const HOST_AGENT_SOCK: &str = "ha.sock";
pub const HOST_AGENT_STDOUT_LOG: &str = "ha.stdout.log";
pub const HOST_AGENT_STDERR_LOG: &str = "ha.stderr.log";
pub const EXTERNAL_DRIVER_STDERR_LOG: &str = "driver.stderr.log";
pub const VZ_IDENTIFIER: &str = "vz-identifier";
pub const VZ_EFI: &str = "vz-efi";
pub const QEMU_EFI_CODE_FD: &str = "qemu-efi-code.fd";
pub const PROTECTED: &str = "protected";
/// The inventory `limactl start` writes for `provision` steps of mode `ansible`.
pub const ANSIBLE_INVENTORY_YAML: &str = "ansible-inventory.yaml";
/// swtpm's TPM state (a directory).
pub const SWTPM_DIR: &str = "swtpm";
/// What `limactl clone` and `rename` leave behind (upstream's `SkipOnClone`): the protection,
/// and the TPM state, which must not be shared between instances.
pub const SKIP_ON_CLONE: &[&str] = &[PROTECTED, SWTPM_DIR];
/// What `clone` and `rename` copy as empty files (upstream's `NullifyOnClone`): the vz machine
/// identifier must not be shared, but its presence still says the instance is a vz one.
pub const NULLIFY_ON_CLONE: &[&str] = &[VZ_IDENTIFIER];
/// What `limactl factory-reset` keeps besides every `*.yaml`/`*.yml` (upstream's list).
pub const KEEP_ON_FACTORY_RESET: &[&str] = &[LIMA_VERSION, PROTECTED, VZ_IDENTIFIER];
/// The longest socket name in an instance directory: ssh appends 17 characters to
/// `ssh.sock` while it makes the control socket. Its full path must fit `UNIX_PATH_MAX`.
pub const LONGEST_SOCK: &str = "ssh.sock.1234567890123456";
/// The qemu process id, written by qemu itself (`-pidfile`).
pub const QEMU_PID: &str = "qemu.pid";

// Files in a disk directory ($LIMA_HOME/_disks/NAME).
/// The disk image (qcow2 or raw).
pub const DATA_DISK: &str = "datadisk";
/// A symlink to the directory of the instance using the disk: the disk's lock.
pub const IN_USE_BY: &str = "in_use_by";
/// Files that must not survive a stop (stale pid files and sockets).
pub const TMP_FILE_SUFFIXES: &[&str] = &[".pid", ".sock", ".tmp"];
