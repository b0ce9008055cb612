//! [`Filled`]: a lima.yaml after its defaults were filled and it was validated, with the
//! fields that always have a value typed and no longer `Option`. Consumers (drivers, cidata,
//! the store, the instance flow) read these instead of falling back to defaults of their own.
//! It serializes as the lima.yaml it wraps, so the driver protocol's JSON is unchanged.

use serde::{Deserialize, Serialize};

use crate::{Arch, ByteSize, LimaYaml, Os};

/// The guest's mount type (`mountType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MountType {
    ReverseSshfs,
    NineP,
    Virtiofs,
    Wsl2,
}

impl MountType {
    pub const ALL: [MountType; 4] = [
        MountType::ReverseSshfs,
        MountType::NineP,
        MountType::Virtiofs,
        MountType::Wsl2,
    ];

    /// Lima's spelling (`reverse-sshfs`, `9p`, `virtiofs`, `wsl2`).
    pub const fn as_str(self) -> &'static str {
        match self {
            MountType::ReverseSshfs => "reverse-sshfs",
            MountType::NineP => "9p",
            MountType::Virtiofs => "virtiofs",
            MountType::Wsl2 => "wsl2",
        }
    }
}

impl std::fmt::Display for MountType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for MountType {
    type Err = NotFilled;
    fn from_str(s: &str) -> Result<Self, NotFilled> {
        MountType::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| NotFilled::bad("mountType", s))
    }
}

/// The guest user, every field set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilledUser {
    pub name: String,
    pub comment: String,
    pub home: String,
    pub shell: String,
    pub uid: u32,
    pub passwordless_sudo: bool,
}

/// A config that is not filled: a defaulted field is missing or does not parse. Raised only
/// when a config skipped the defaults (a bug, or a hand-made config in a test).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the config is not filled: field `{field}` {why}")]
pub struct NotFilled {
    pub field: &'static str,
    pub why: String,
}

impl NotFilled {
    fn missing(field: &'static str) -> Self {
        NotFilled {
            field,
            why: "is not set".into(),
        }
    }

    fn bad(field: &'static str, value: &str) -> Self {
        NotFilled {
            field,
            why: format!("has the value {value:?}, which is not valid"),
        }
    }
}

/// A filled, validated lima.yaml. Built only from a config whose defaulted fields are all set
/// ([`TryFrom<LimaYaml>`]); the typed fields and [`Filled::yaml`] always agree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "LimaYaml", into = "LimaYaml")]
pub struct Filled {
    yaml: LimaYaml,
    pub os: Os,
    pub arch: Arch,
    pub cpus: u32,
    pub memory: ByteSize,
    pub disk: ByteSize,
    /// Set by the driver's `fill_config` (its default depends on the driver, as upstream's
    /// does on vmType): `None` before a driver was chosen.
    pub mount_type: Option<MountType>,
    pub user: FilledUser,
    /// `ssh.localPort`; 0 means "pick a free port when the instance starts".
    pub ssh_local_port: u16,
    pub timezone: String,
}

impl Filled {
    /// The whole config, for the fields that have no default (images, mounts, provision...).
    pub fn yaml(&self) -> &LimaYaml {
        &self.yaml
    }

    pub fn into_yaml(self) -> LimaYaml {
        self.yaml
    }

    /// `vmType` once a driver was chosen (the registry sets it; the defaults do not).
    pub fn vm_type(&self) -> Option<&str> {
        self.yaml.vm_type.as_deref()
    }
}

/// A filled config is a lima.yaml with guarantees: read any field through it. (No `DerefMut`:
/// the typed fields and the yaml must not drift apart.) The typed fields shadow the optional
/// ones of the same name (`filled.cpus` is a `u32`).
impl std::ops::Deref for Filled {
    type Target = LimaYaml;
    fn deref(&self) -> &LimaYaml {
        &self.yaml
    }
}

impl From<Filled> for LimaYaml {
    fn from(f: Filled) -> LimaYaml {
        f.yaml
    }
}

impl TryFrom<LimaYaml> for Filled {
    type Error = NotFilled;

    fn try_from(yaml: LimaYaml) -> Result<Self, NotFilled> {
        fn parsed<T: std::str::FromStr>(
            field: &'static str,
            value: Option<&str>,
        ) -> Result<T, NotFilled> {
            let v = value.ok_or(NotFilled::missing(field))?;
            v.parse().map_err(|_| NotFilled::bad(field, v))
        }
        let user = yaml.user.as_ref().ok_or(NotFilled::missing("user"))?;
        let text =
            |field: &'static str, v: &Option<String>| v.clone().ok_or(NotFilled::missing(field));
        let uid = user.uid.ok_or(NotFilled::missing("user.uid"))?;
        let user = FilledUser {
            name: text("user.name", &user.name)?,
            comment: text("user.comment", &user.comment)?,
            home: text("user.home", &user.home)?,
            shell: text("user.shell", &user.shell)?,
            uid: u32::try_from(uid).map_err(|_| NotFilled::bad("user.uid", &uid.to_string()))?,
            passwordless_sudo: user
                .passwordless_sudo
                .ok_or(NotFilled::missing("user.passwordlessSudo"))?,
        };
        let cpus = yaml.cpus.ok_or(NotFilled::missing("cpus"))?;
        let local_port = yaml.ssh.as_ref().and_then(|s| s.local_port).unwrap_or(0);
        Ok(Filled {
            os: parsed("os", yaml.os.as_deref())?,
            arch: parsed("arch", yaml.arch.as_deref())?,
            cpus: u32::try_from(cpus).map_err(|_| NotFilled::bad("cpus", &cpus.to_string()))?,
            memory: parsed("memory", yaml.memory.as_deref())?,
            disk: parsed("disk", yaml.disk.as_deref())?,
            mount_type: match yaml.mount_type.as_deref() {
                None => None,
                some => Some(parsed("mountType", some)?),
            },
            user,
            ssh_local_port: u16::try_from(local_port)
                .map_err(|_| NotFilled::bad("ssh.localPort", &local_port.to_string()))?,
            timezone: text("timezone", &yaml.timezone)?,
            yaml,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled_yaml() -> LimaYaml {
        LimaYaml::from_yaml(
            "os: Linux\narch: x86_64\ncpus: 4\nmemory: 4GiB\ndisk: 100GiB\nmountType: 9p\n\
             timezone: UTC\nuser:\n  name: me\n  comment: Me\n  home: /home/me.guest\n  \
             shell: /bin/bash\n  uid: 1000\n  passwordlessSudo: true\nssh:\n  localPort: 0\n",
        )
        .unwrap()
    }

    #[test]
    fn typed_fields_agree_with_the_yaml() {
        let f = Filled::try_from(filled_yaml()).unwrap();
        assert_eq!((f.os, f.arch, f.cpus), (Os::Linux, Arch::X86_64, 4));
        assert_eq!(f.memory.bytes(), 4 << 30);
        assert_eq!(f.mount_type, Some(MountType::NineP));
        assert_eq!(f.user.uid, 1000);
        assert_eq!(f.yaml().cpus, Some(4));
        // The wire form is the lima.yaml itself.
        let json = serde_json::to_string(&f).unwrap();
        assert!(json.contains("\"cpus\":4"), "{json}");
        let back: Filled = serde_json::from_str(&json).unwrap();
        assert_eq!(back, f);
    }

    #[test]
    fn an_unfilled_config_is_refused_naming_the_field() {
        let mut y = filled_yaml();
        y.memory = None;
        assert_eq!(Filled::try_from(y).unwrap_err().field, "memory");
        let mut y = filled_yaml();
        y.mount_type = Some("nfs".into());
        let e = Filled::try_from(y).unwrap_err();
        assert_eq!(e.field, "mountType");
        assert!(e.to_string().contains("nfs"), "{e}");
        let e = serde_json::from_str::<Filled>("{\"cpus\":2}").unwrap_err();
        assert!(e.to_string().contains("not filled"), "{e}");
    }

    #[test]
    fn mount_types_match_the_schema_list() {
        let names: Vec<&str> = MountType::ALL.iter().map(|m| m.as_str()).collect();
        assert_eq!(names, crate::MOUNT_TYPES);
    }
}
