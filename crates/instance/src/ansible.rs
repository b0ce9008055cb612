//! `provision` steps of mode `ansible` (deprecated upstream, still run): once the instance is
//! running, `limactl start` runs `ansible-playbook -i <dir>/ansible-inventory.yaml PLAYBOOK`
//! on the host for each, in order, as upstream's `runAnsibleProvision`: the inventory names
//! the instance by its `lima-NAME` host and reaches it through its `ssh.config`; the
//! instance's `param` values are in the environment as `PARAM_<KEY>`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use limatype::{filenames, Instance};

use crate::error::io as io_err;
use crate::{InstanceError, Result};

/// The `(index, playbook)` of each ansible step.
pub fn playbooks(inst: &Instance) -> Vec<(usize, String)> {
    let Some(cfg) = &inst.config else {
        return vec![];
    };
    cfg.provision
        .iter()
        .flatten()
        .enumerate()
        .filter(|(_, p)| p.mode.as_deref() == Some("ansible"))
        .map(|(i, p)| (i, p.playbook.clone().unwrap_or_default()))
        .collect()
}

/// Upstream's inventory: group `lima`, one host named after the instance.
pub fn inventory(inst: &Instance) -> String {
    let vars = BTreeMap::from([
        ("ansible_connection", "ssh".to_string()),
        ("ansible_host", inst.hostname.clone()),
        (
            "ansible_ssh_common_args",
            format!("-F {}", inst.ssh_config_file),
        ),
    ]);
    let doc = BTreeMap::from([(
        "lima",
        BTreeMap::from([("hosts", BTreeMap::from([(inst.name.clone(), vars)]))]),
    )]);
    // Maps of strings always serialize.
    serde_yaml::to_string(&doc).unwrap_or_default()
}

/// Runs every ansible step with the `ansible-playbook` found in `$PATH`; a clear error when
/// there are steps and it is not installed. Nothing runs when there are no steps.
pub fn run_provision(inst: &Instance) -> Result<()> {
    let steps = playbooks(inst);
    let Some((first, _)) = steps.first() else {
        return Ok(());
    };
    let bin = osutil::look_path(Path::new("ansible-playbook"))
        .ok_or(InstanceError::AnsibleMissing { index: *first })?;
    run_with(inst, &bin, &steps)
}

/// Runs the steps with `bin` as `ansible-playbook` (its output goes to limactl's).
pub fn run_with(inst: &Instance, bin: &Path, steps: &[(usize, String)]) -> Result<()> {
    let path = Path::new(&inst.dir).join(filenames::ANSIBLE_INVENTORY_YAML);
    std::fs::write(&path, inventory(inst)).map_err(io_err("writing", &path))?;
    let params = inst
        .config
        .as_ref()
        .and_then(|c| c.param.clone())
        .unwrap_or_default();
    for (index, playbook) in steps {
        tracing::info!("Waiting for ansible playbook `{playbook}`");
        let failed = |detail: String| InstanceError::AnsibleFailed {
            index: *index,
            playbook: playbook.clone(),
            detail,
        };
        let status = Command::new(bin)
            .arg("-i")
            .arg(&path)
            .arg(playbook)
            .envs(params.iter().map(|(k, v)| (format!("PARAM_{k}"), v)))
            .status()
            .map_err(|e| failed(format!("running {}: {e}", bin.display())))?;
        if !status.success() {
            return Err(failed(format!("ansible-playbook exited with {status}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn inst(dir: &Path, yaml: &str) -> Instance {
        Instance {
            name: "web".into(),
            hostname: "lima-web".into(),
            dir: dir.display().to_string(),
            ssh_config_file: dir.join("ssh.config").display().to_string(),
            config: Some(serde_yaml::from_str(yaml).unwrap()),
            ..Default::default()
        }
    }

    #[test]
    fn inventory_names_the_host_and_its_ssh_config() {
        let i = inst(Path::new("/lima/web"), "{}");
        assert_eq!(
            inventory(&i),
            "lima:\n  hosts:\n    web:\n      ansible_connection: ssh\n      ansible_host: lima-web\n      ansible_ssh_common_args: -F /lima/web/ssh.config\n"
        );
    }

    #[test]
    fn playbooks_run_in_order_with_params_and_a_failure_stops() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = "param: {GREETING: hi}\nprovision:\n- mode: system\n  script: x\n- mode: ansible\n  playbook: one.yaml\n- mode: ansible\n  playbook: two.yaml\n";
        let i = inst(dir.path(), yaml);
        let steps = playbooks(&i);
        assert_eq!(steps, vec![(1, "one.yaml".into()), (2, "two.yaml".into())]);
        let log = dir.path().join("calls");
        let bin = dir.path().join("ansible-playbook");
        std::fs::write(
            &bin,
            format!(
                "#!/bin/sh\necho \"$* $PARAM_GREETING\" >>'{}'\n[ \"$3\" != two.yaml ]\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = run_with(&i, &bin, &steps).unwrap_err().to_string();
        assert!(
            err.contains("provision[2]") && err.contains("two.yaml"),
            "{err}"
        );
        let inv = dir.path().join(filenames::ANSIBLE_INVENTORY_YAML);
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            format!("-i {0} one.yaml hi\n-i {0} two.yaml hi\n", inv.display())
        );
        assert!(std::fs::read_to_string(inv).unwrap().contains("lima-web"));
    }

    #[test]
    fn no_steps_no_lookup() {
        let i = inst(Path::new("/nonexistent"), "{}");
        assert!(run_provision(&i).is_ok());
    }
}
