//! An instance as `limactl list` shows it, read from its directory only.

use std::path::Path;

use limatype::{filenames, Filled, Instance, Status};

use crate::{instance_dir, read_instance_pid_file, Result, StoreError};

/// Reads an instance's `lima.yaml` into the values it runs with (the caller's loader fills the
/// defaults; the store does not know them). Its error makes the instance `Broken`.
pub type YamlLoader<'a> =
    &'a dyn Fn(&Path) -> std::result::Result<Filled, Box<dyn std::error::Error + Send + Sync>>;

/// What an instance is and whether it runs, from its directory: `lima.yaml` (through `load`),
/// pid files (checked with `kill(pid, 0)`), `ssh.config`. Starts no process and connects to
/// nothing.
pub fn inspect(name: &str, load: YamlLoader) -> Result<Instance> {
    let dir = instance_dir(name)?;
    let yaml_path = dir.join(filenames::LIMA_YAML);
    if !dir.is_dir() {
        return Err(StoreError::NotFound(name.to_string()));
    }
    if !yaml_path.exists() {
        // Left by a create that was killed (or by hand): shown, never hidden.
        return Ok(Instance {
            name: name.to_string(),
            dir: dir.display().to_string(),
            status: Status::Broken,
            errors: vec![format!(
                "{} is missing (was a create interrupted?); `limactl delete {name}` removes the directory",
                yaml_path.display()
            )],
            ..Default::default()
        });
    }
    let mut inst = Instance {
        name: name.to_string(),
        hostname: format!("lima-{name}"),
        dir: dir.display().to_string(),
        status: Status::Unknown,
        ssh_address: "127.0.0.1".into(),
        ssh_config_file: dir.join(filenames::SSH_CONFIG).display().to_string(),
        ..Default::default()
    };
    let message;
    match load(&yaml_path) {
        Ok(y) => {
            inst.vm_type = y.vm_type().unwrap_or_default().to_string();
            inst.arch = y.arch.to_string();
            inst.cpus = i64::from(y.cpus);
            inst.memory = size_field(y.memory);
            inst.disk = size_field(y.disk);
            inst.ssh_local_port = i64::from(y.ssh_local_port);
            inst.additional_disks = y.additional_disks.clone().unwrap_or_default();
            inst.networks = y.networks.clone().unwrap_or_default();
            message = y.message.clone().unwrap_or_default();
            inst.config = Some(y.into_yaml());
        }
        Err(e) => {
            inst.status = Status::Broken;
            inst.errors.push(format!("{}: {e}", yaml_path.display()));
            return Ok(inst);
        }
    }
    if let Some(port) = ssh_port_from_config(&dir.join(filenames::SSH_CONFIG)) {
        inst.ssh_local_port = port;
    }
    inst.protected = dir.join(filenames::PROTECTED).exists();
    if let Ok(v) = std::fs::read_to_string(dir.join(filenames::LIMA_VERSION)) {
        inst.lima_version = v.trim().to_string();
    }
    status_from_pid_files(&dir, &mut inst);
    render_message_into(&mut inst, &message);
    Ok(inst)
}

/// `message` rendered with the instance's fields, as upstream's `Inspect`; a template that
/// does not parse or run makes the instance `Broken`, naming it.
fn render_message_into(inst: &mut Instance, message: &str) {
    let rendered = crate::format::GlobalFields::detect()
        .map_err(|e| e.to_string())
        .and_then(|g| crate::format::render_message(inst, message, &g).map_err(|e| e.to_string()));
    match rendered {
        Ok(m) => inst.message = m,
        Err(e) => {
            inst.status = Status::Broken;
            inst.errors
                .push(format!("message {message:?} is not a valid template: {e}"));
        }
    }
}

/// The driver's pid file: `<vmType>.pid` (`qemu.pid`).
pub fn driver_pid_file(vm_type: &str) -> String {
    format!("{vm_type}.pid")
}

fn status_from_pid_files(dir: &Path, inst: &mut Instance) {
    let mut pid = |file: &str| match read_instance_pid_file(&dir.join(file), dir) {
        Ok(p) => p.unwrap_or(0) as i64,
        Err(e) => {
            inst.errors.push(e.to_string());
            0
        }
    };
    let ha = pid(filenames::HOST_AGENT_PID);
    let drv = pid(&driver_pid_file(&inst.vm_type));
    inst.host_agent_pid = ha;
    inst.driver_pid = drv;
    inst.status = match (ha > 0, drv > 0) {
        (true, true) => Status::Running,
        (false, false) => Status::Stopped,
        (true, false) => {
            inst.errors
                .push("host agent is running but the driver is not".into());
            Status::Broken
        }
        (false, true) => {
            inst.errors.push(format!(
                "{} driver is running but the host agent is not",
                inst.vm_type
            ));
            Status::Broken
        }
    };
    if !inst.errors.is_empty() && inst.status != Status::Broken {
        inst.status = Status::Broken;
    }
}

/// `Port N` in a generated ssh.config.
pub fn ssh_port_from_config(path: &Path) -> Option<i64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Port "))
        .find_map(|p| p.trim().parse().ok())
}

/// Bytes of a `memory`/`disk` value for the instance table; 0 when unset or unreadable.
fn size_field(size: limatype::ByteSize) -> i64 {
    i64::try_from(size.bytes()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file with this host's defaults (no `_config` layers, no validation).
    fn raw(path: &Path) -> std::result::Result<Filled, Box<dyn std::error::Error + Send + Sync>> {
        let y: limatype::LimaYaml = serde_yaml::from_str(&std::fs::read_to_string(path)?)?;
        Ok(limadefaults::fill_in_memory(
            &y,
            &limadefaults::detect_host(),
            "t",
        )?)
    }

    use crate::with_test_home as with_home;

    #[test]
    fn status_follows_pid_files() {
        with_home(|home| {
            let dir = home.join("vm1");
            crate::ensure_private_dir(&dir).unwrap();
            std::fs::write(
                dir.join("lima.yaml"),
                "vmType: qemu\narch: x86_64\ncpus: 2\nmemory: 2GiB\ndisk: 10GiB\n",
            )
            .unwrap();
            let i = inspect("vm1", &raw).unwrap();
            assert_eq!(i.status, Status::Stopped);
            assert_eq!((i.cpus, i.memory, i.disk), (2, 2 << 30, 10 << 30));

            // A process of the instance (it runs in its directory), as the host agent does.
            let mut agent = std::process::Command::new("sleep")
                .arg("30")
                .current_dir(&dir)
                .spawn()
                .unwrap();
            let me = agent.id();
            crate::write_pid_file(&dir.join("ha.pid"), me).unwrap();
            let i = inspect("vm1", &raw).unwrap();
            assert_eq!(i.status, Status::Broken);
            assert!(i.errors[0].contains("driver is not"), "{:?}", i.errors);

            crate::write_pid_file(&dir.join("qemu.pid"), me).unwrap();
            std::fs::write(dir.join("ssh.config"), "Host lima-vm1\n  Port 41234\n").unwrap();
            let i = inspect("vm1", &raw).unwrap();
            assert_eq!(i.status, Status::Running);
            assert_eq!(i.ssh_local_port, 41234);
            let json = serde_json::to_string(&i).unwrap();
            assert!(json.contains("\"status\":\"Running\""), "{json}");

            std::fs::remove_file(dir.join("ha.pid")).unwrap();
            let i = inspect("vm1", &raw).unwrap();
            assert_eq!(i.status, Status::Broken);
            assert!(i.errors[0].contains("host agent is not"), "{:?}", i.errors);
            agent.kill().unwrap();
            agent.wait().unwrap();

            assert_eq!(crate::instance_names().unwrap(), vec!["vm1".to_string()]);
            assert!(matches!(
                inspect("nope", &raw),
                Err(StoreError::NotFound(_))
            ));
            assert!(matches!(
                inspect("../etc", &raw),
                Err(StoreError::InvalidName { .. })
            ));
        })
    }

    #[test]
    fn broken_yaml_is_reported_not_fatal() {
        with_home(|home| {
            let dir = home.join("bad");
            crate::ensure_private_dir(&dir).unwrap();
            std::fs::write(dir.join("lima.yaml"), "cpus: [\n").unwrap();
            let i = inspect("bad", &raw).unwrap();
            assert_eq!(i.status, Status::Broken);
            assert!(i.errors[0].contains("lima.yaml"), "{:?}", i.errors);
        })
    }
}
