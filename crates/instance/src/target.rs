//! What `limactl start`/`create` was given: an existing instance's name, or a config locator
//! with the name of the instance to make from it.

use crate::{InstanceError, Result};

#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    Existing(String),
    Create { name: String, locator: String },
}

/// Decides what `start`/`create` was given: an existing instance's name, or a config locator
/// (with the instance name from `--name` or from the locator's file name).
pub fn existing_or_create(target: Option<&str>, name: Option<&str>) -> Result<Target> {
    let Some(t) = target else {
        let name = name.unwrap_or("default");
        return existing_or(name, "template:default");
    };
    let looks_like_locator = t.contains('/')
        || t.contains(':')
        || t.ends_with(".yaml")
        || t.ends_with(".yml")
        || t == "-";
    if !looks_like_locator && name.is_none() {
        // `limactl start NAME` for a new NAME uses the template of that name.
        return existing_or(t, &format!("template:{t}"));
    }
    let name = match name {
        Some(n) => n.to_string(),
        None => name_from_locator(t)?,
    };
    store::validate_instance_name(&name)?;
    if store::instance_exists(&name)? {
        return Err(InstanceError::ExistsChooseName { name });
    }
    Ok(Target::Create {
        name,
        locator: t.to_string(),
    })
}

fn existing_or(name: &str, locator: &str) -> Result<Target> {
    store::validate_instance_name(name)?;
    Ok(if store::instance_exists(name)? {
        Target::Existing(name.to_string())
    } else {
        Target::Create {
            name: name.to_string(),
            locator: locator.to_string(),
        }
    })
}

/// `ubuntu-24.04.yaml`, `template:docker`, `https://x/y/alpine.yaml` -> `ubuntu-24.04`,
/// `docker`, `alpine`.
pub fn name_from_locator(locator: &str) -> Result<String> {
    let base = locator
        .strip_prefix("template:")
        .unwrap_or(locator)
        .rsplit('/')
        .next()
        .unwrap_or(locator)
        .to_ascii_lowercase();
    let base = base
        .strip_suffix(".yaml")
        .or_else(|| base.strip_suffix(".yml"))
        .unwrap_or(&base)
        .to_string();
    store::validate_instance_name(&base).map_err(|source| InstanceError::UnnamedLocator {
        locator: locator.to_string(),
        source,
    })?;
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_locator_file_name() {
        assert_eq!(
            name_from_locator("ubuntu-24.04.yaml").unwrap(),
            "ubuntu-24.04"
        );
        assert_eq!(name_from_locator("template:docker").unwrap(), "docker");
        assert_eq!(
            name_from_locator("https://x/y/Alpine.yml").unwrap(),
            "alpine"
        );
        let err = name_from_locator("https://x/y/").unwrap_err().to_string();
        assert!(err.contains("use --name"), "{err}");
    }
}
