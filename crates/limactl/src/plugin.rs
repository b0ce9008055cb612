//! `limactl NAME ARGS...` for a `limactl-NAME` plug-in (`osutil::plugins` finds them): which
//! argument names the plug-in, its section of `--help`, and running it with our exit code
//! becoming its own.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Context;
use osutil::plugins::Plugin;

/// Root flags that take a separate value (`--log-level debug`).
const VALUED_FLAGS: &[&str] = &["--log-level", "--log-format"];

/// The index of the argument naming a plug-in, and the plug-in, when the first non-flag
/// argument is not a built-in command but a plug-in's name.
pub fn invocation<'a>(
    args: &[OsString],
    builtin: &[String],
    plugins: &'a [Plugin],
) -> Option<(usize, &'a Plugin)> {
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_str()?;
        if a == "--" {
            return None;
        }
        if a.starts_with('-') {
            i += if VALUED_FLAGS.contains(&a) { 2 } else { 1 };
            continue;
        }
        if a == "help" || builtin.iter().any(|b| b == a) {
            return None;
        }
        return plugins.iter().find(|p| p.name == a).map(|p| (i, p));
    }
    None
}

/// The `Available Plugins (Experimental):` section of `--help` (url-scheme helpers hidden, as
/// upstream hides them).
pub fn help_section(plugins: &[Plugin]) -> Option<String> {
    let shown: Vec<&Plugin> = plugins
        .iter()
        .filter(|p| !p.name.starts_with("url-"))
        .collect();
    if shown.is_empty() {
        return None;
    }
    let width = shown.iter().map(|p| p.name.len()).max().unwrap_or(0);
    let mut s = String::from("Available Plugins (Experimental):\n");
    for p in shown {
        let desc = p.description.as_deref().unwrap_or("");
        s.push_str(format!("  {:<width$}  {desc}", p.name).trim_end());
        s.push('\n');
    }
    Some(s)
}

/// Runs the plug-in with the rest of the arguments, our stdio and environment, and `PATH` set
/// to the plug-in directories (so it finds this limactl); returns its exit code.
pub fn run(plugin: &Plugin, args: &[OsString], dirs: &[PathBuf]) -> anyhow::Result<i32> {
    let mut cmd = std::process::Command::new(&plugin.path);
    cmd.args(args);
    if let Some(path) = osutil::plugins::path_for_plugins(dirs) {
        cmd.env("PATH", path);
    }
    tracing::debug!("running plug-in {}", plugin.path.display());
    let status = cmd
        .status()
        .with_context(|| format!("external command `{}` failed", plugin.path.display()))?;
    Ok(status.code().unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(name: &str, desc: Option<&str>) -> Plugin {
        Plugin {
            name: name.into(),
            path: PathBuf::from(format!("/x/limactl-{name}")),
            description: desc.map(str::to_string),
        }
    }

    #[test]
    fn finds_the_plugin_after_global_flags() {
        let plugins = [plugin("foo", None)];
        let builtin = vec!["list".to_string()];
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let at = |v: &[&str]| invocation(&args(v), &builtin, &plugins).map(|(i, _)| i);
        assert_eq!(at(&["limactl", "foo", "-x"]), Some(1));
        assert_eq!(at(&["limactl", "--log-level", "debug", "foo"]), Some(3));
        assert_eq!(at(&["limactl", "--debug", "foo"]), Some(2));
        assert_eq!(at(&["limactl", "list", "foo"]), None);
        assert_eq!(at(&["limactl", "bar"]), None);
        assert_eq!(at(&["limactl", "--", "foo"]), None);
    }

    #[test]
    fn help_lists_plugins_but_url_helpers() {
        let s = help_section(&[
            plugin("foo", Some("Does foo")),
            plugin("longer", None),
            plugin("url-x", None),
        ])
        .unwrap();
        assert_eq!(
            s,
            "Available Plugins (Experimental):\n  foo     Does foo\n  longer\n"
        );
        assert_eq!(help_section(&[plugin("url-x", None)]), None);
    }
}
