//! `limactl start [--name N] [flags] [FILE.yaml|URL|template:NAME|NAME]`: creates the instance
//! if a config is given (the edit flags and `--set` applied to it; to an existing instance's
//! `lima.yaml` otherwise), then starts it through the `instance` flow: disks prepared by the
//! driver, the host agent spawned in the background and followed until the instance is running
//! (exit 0) or has failed (exit 1, naming the failed requirement and the relevant log lines).

use std::time::Duration;

use anyhow::Result;
use clap::Args;
use hostagent::phases::Phase;
use instance::ops::{Launch, Started};
use instance::target::{existing_or_create, Target};

use super::editflags::CreateFlagArgs;

#[derive(Args, Clone)]
pub struct StartArgs {
    /// An existing instance name, or a config to create one from (FILE.yaml, URL,
    /// template:NAME).
    pub target: Option<String>,
    /// Name of the instance to create.
    #[arg(long)]
    pub name: Option<String>,
    /// List available templates and exit.
    #[arg(long)]
    pub list_templates: bool,
    /// List the available drivers, one a line (`NAME`, or `NAME (external)`), and exit.
    #[arg(long)]
    pub list_drivers: bool,
    #[command(flatten)]
    pub flags: CreateFlagArgs,
    /// How long to wait for the instance to become ready: a duration as upstream's (`10m`,
    /// `1h30m`, `90s`), or a number of seconds.
    #[arg(long, default_value = "10m0s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Run the hostagent in the foreground.
    #[arg(long)]
    pub foreground: bool,
    /// Show provision script progress by tailing cloud-init logs.
    #[arg(long)]
    pub progress: bool,
}

/// `--timeout`: Go-style durations (`10m0s`, `1h30m`, `90s`) or plain seconds.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    let d = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(text)
            .map_err(|e| format!("{text:?} is not a duration such as 10m or 90s: {e}"))?,
    };
    if d.is_zero() {
        return Err("the timeout must be more than zero".into());
    }
    Ok(d)
}

pub fn run(args: StartArgs) -> Result<()> {
    if args.list_templates {
        print!("{}", super::editflags::list_templates()?);
        return Ok(());
    }
    let reg = crate::drivers::registry();
    if args.list_drivers {
        print!("{}", super::create::list_drivers(&reg.list()));
        return Ok(());
    }
    let started_at = std::time::Instant::now();
    let target = existing_or_create(args.target.as_deref(), args.name.as_deref())?;
    super::runtime()?.block_on(async {
        let mut phases = Vec::new();
        let (name, created) = match target {
            Target::Existing(name) => {
                // As upstream: the flags edit the existing instance's lima.yaml first.
                if !args.flags.is_empty() {
                    instance::edit(reg, &name, &args.flags.edit_fn(false)).await?;
                }
                (name, None)
            }
            Target::Create { name, locator } => {
                let edit = args.flags.edit_fn(true);
                let opened = instance::create_edited(reg, &name, &locator, &edit).await?;
                let created = Phase::new("create", started_at.elapsed());
                super::say(&created.line());
                phases.push(created);
                super::create::say_created(&opened);
                (name, Some(opened))
            }
        };
        let launch = if args.foreground {
            Launch::Foreground {
                progress: args.progress,
            }
        } else {
            Launch::Background {
                timeout: args.timeout,
                progress: args.progress,
            }
        };
        match instance::ops::start(reg, &name, created, launch, &super::say).await? {
            Started::AlreadyRunning => tracing::info!(
                "The instance {name:?} is already running. Run `limactl shell {name}` to open the shell."
            ),
            Started::Ready {
                ssh_local_port,
                phases: started,
            } => {
                phases.extend(started);
                // As upstream: ansible steps run before READY; a failure fails the start.
                let inst = instance::ops::inspect(&name)?;
                let ansible = std::time::Instant::now();
                instance::ansible::run_provision(&inst)?;
                if !instance::ansible::playbooks(&inst).is_empty() {
                    let p = Phase::new("ansible", ansible.elapsed());
                    super::say(&p.line());
                    phases.push(p);
                }
                super::say(&hostagent::phases::summary(&phases, started_at.elapsed()));
                tracing::info!(
                    "READY. Run `limactl shell {name}` to open the shell (ssh port {ssh_local_port})."
                );
                show_message(&inst)?;
            }
        }
        Ok(())
    })
}

/// Upstream's `ShowMessage`: the rendered `message` (see `store::inspect`) after READY, under
/// one log line, its own lines printed as they are so they can be copied.
fn show_message(inst: &limatype::Instance) -> Result<()> {
    use std::io::Write;
    if inst.message.is_empty() {
        return Ok(());
    }
    tracing::info!("Message from the instance `{}`:", inst.name);
    let mut err = std::io::stderr().lock();
    for line in inst.message.lines() {
        writeln!(err, "{line}")?;
    }
    Ok(())
}

impl StartArgs {
    /// `limactl start NAME` with no other flag (for `edit --start`, `restart`, `shell --start`).
    pub fn existing(name: &str) -> Self {
        StartArgs {
            target: Some(name.to_string()),
            name: None,
            list_templates: false,
            list_drivers: false,
            flags: CreateFlagArgs::default(),
            timeout: Duration::from_secs(600),
            foreground: false,
            progress: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_as_durations_or_seconds() {
        assert_eq!(parse_timeout("10m0s"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_timeout("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_timeout("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_timeout("600"), Ok(Duration::from_secs(600)));
        assert!(parse_timeout("0s").is_err());
        assert!(parse_timeout("soon").unwrap_err().contains("\"soon\""));
    }
}
