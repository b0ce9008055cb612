//! `limactl start [--name N] [flags] [FILE.yaml|URL|template:NAME|NAME]`: creates the instance
//! if a config is given (the edit flags and `--set` applied to it; to an existing instance's
//! `lima.yaml` otherwise), then starts it through the `instance` flow: disks prepared by the
//! driver, the host agent spawned in the background and followed until the instance is running
//! (exit 0) or has failed (exit 1, naming the failed requirement and the relevant log lines).

use std::time::Duration;

use anyhow::Result;
use clap::Args;
use instance::ops::Started;
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
    #[command(flatten)]
    pub flags: CreateFlagArgs,
    /// Seconds to wait for the instance to become ready.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

pub fn run(args: StartArgs) -> Result<()> {
    if args.list_templates {
        print!("{}", super::editflags::list_templates()?);
        return Ok(());
    }
    let reg = crate::drivers::registry();
    let target = existing_or_create(args.target.as_deref(), args.name.as_deref())?;
    super::runtime()?.block_on(async {
        let (name, created) = match target {
            Target::Existing(name) => {
                // As upstream: the flags edit the existing instance's lima.yaml first.
                if !args.flags.is_empty() {
                    instance::edit(&name, &args.flags.edit_fn(false))?;
                }
                (name, None)
            }
            Target::Create { name, locator } => {
                let edit = args.flags.edit_fn(true);
                let opened = instance::create_edited(reg, &name, &locator, &edit).await?;
                super::create::say_created(&opened);
                (name, Some(opened))
            }
        };
        let timeout = Duration::from_secs(args.timeout);
        match instance::ops::start(reg, &name, created, timeout, &super::say).await? {
            Started::AlreadyRunning => eprintln!(
                "The instance {name:?} is already running. Run `limactl shell {name}` to open the shell."
            ),
            Started::Ready { ssh_local_port } => eprintln!(
                "READY. Run `limactl shell {name}` to open the shell (ssh port {ssh_local_port})."
            ),
        }
        Ok(())
    })
}

impl StartArgs {
    /// `limactl start NAME` with no other flag (for `limactl edit --start`).
    pub fn existing(name: &str) -> Self {
        StartArgs {
            target: Some(name.to_string()),
            name: None,
            list_templates: false,
            flags: CreateFlagArgs::default(),
            timeout: 600,
        }
    }
}
