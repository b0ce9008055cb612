//! Driver names and the file names of external driver executables: the rule shared by
//! validation (`vmType`), the registry's discovery and the build (xtask).

use crate::Os;

/// Every external driver executable's name starts with this.
pub const DRIVER_FILE_PREFIX: &str = "lima-driver-";

/// Whether `name` is well-formed as a driver name (`vmType`, `lima-driver-<name>`): ASCII
/// letters, digits, `-` and `_`, starting with a letter or digit.
pub fn valid_driver_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The executable file name of driver `name` on `os`: `lima-driver-<name>`, with `.exe` on
/// Windows.
pub fn driver_file_name(name: &str, os: Os) -> String {
    match os {
        Os::Windows => format!("{DRIVER_FILE_PREFIX}{name}.exe"),
        Os::Linux | Os::Darwin | Os::FreeBSD => format!("{DRIVER_FILE_PREFIX}{name}"),
    }
}

/// The driver name a file name stands for on `os`, if it follows the rule:
/// `lima-driver-<name>` (on Windows `lima-driver-<name>.exe`, the suffix in any case) with a
/// [valid](valid_driver_name) `<name>`, so build leftovers such as `lima-driver-qemu.d`, or
/// `lima-driver-qemu.exe` on Unix, are not drivers.
pub fn driver_name_from_file(file_name: &str, os: Os) -> Option<String> {
    let rest = file_name.strip_prefix(DRIVER_FILE_PREFIX)?;
    let name = match os {
        Os::Windows => {
            let (stem, ext) = rest.split_at(rest.len().checked_sub(4)?);
            if !ext.eq_ignore_ascii_case(".exe") {
                return None;
            }
            stem
        }
        Os::Linux | Os::Darwin | Os::FreeBSD => rest,
    };
    valid_driver_name(name).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_names() {
        let os = Os::Linux;
        assert_eq!(
            driver_name_from_file("lima-driver-qemu", os).as_deref(),
            Some("qemu")
        );
        assert_eq!(
            driver_name_from_file("lima-driver-my_vm-2", os).as_deref(),
            Some("my_vm-2")
        );
        assert_eq!(driver_name_from_file("lima-driver-qemu.exe", os), None);
        assert_eq!(driver_name_from_file("lima-driver-qemu.d", os), None);
        assert_eq!(driver_name_from_file("lima-driver-", os), None);
        assert_eq!(driver_name_from_file("lima-driver--x", os), None);
        assert_eq!(driver_name_from_file("limactl", os), None);
        assert_eq!(driver_name_from_file("xlima-driver-qemu", os), None);
        assert_eq!(
            driver_name_from_file("lima-driver-vz", Os::Darwin).as_deref(),
            Some("vz")
        );
    }

    #[test]
    fn windows_names() {
        let os = Os::Windows;
        assert_eq!(
            driver_name_from_file("lima-driver-wsl2.exe", os).as_deref(),
            Some("wsl2")
        );
        assert_eq!(
            driver_name_from_file("lima-driver-wsl2.EXE", os).as_deref(),
            Some("wsl2")
        );
        assert_eq!(driver_name_from_file("lima-driver-wsl2", os), None);
        assert_eq!(driver_name_from_file("lima-driver-.exe", os), None);
        assert_eq!(driver_name_from_file("lima-driver-a.b.exe", os), None);
        assert_eq!(driver_name_from_file("lima-drive", os), None);
    }

    #[test]
    fn file_names_round_trip() {
        for os in Os::ALL {
            let f = driver_file_name("krunkit", os);
            assert_eq!(driver_name_from_file(&f, os).as_deref(), Some("krunkit"));
        }
        assert_eq!(
            driver_file_name("qemu", Os::Windows),
            "lima-driver-qemu.exe"
        );
        assert_eq!(driver_file_name("qemu", Os::FreeBSD), "lima-driver-qemu");
    }

    #[test]
    fn valid_names() {
        for ok in ["qemu", "wsl2", "my_vm-2", "9p"] {
            assert!(valid_driver_name(ok), "{ok}");
        }
        for bad in ["", "-x", "_x", "a.b", "a b", "é"] {
            assert!(!valid_driver_name(bad), "{bad}");
        }
    }
}
