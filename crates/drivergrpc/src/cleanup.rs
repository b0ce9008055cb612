//! Driver processes must not outlive limactl, not even when limactl is interrupted. Every
//! running driver (its process group and its private socket directory) is listed here from
//! spawn to drop, and the first spawn installs a SIGINT/SIGTERM handler that kills every
//! listed group, removes the directories, then dies of the same signal (exit status 130/143
//! as seen by a shell), as limactl would have without the handler.
//!
//! A process that handles these signals itself to stop its drivers in order (the host agent:
//! SIGTERM there means "stop the VM cleanly") calls [`leave_signals_to_caller`] before it
//! starts its first driver, and may use [`end_all_drivers`] as its last resort.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

struct Live {
    id: u64,
    pgid: libc::pid_t,
    socket_dir: PathBuf,
}

static LIVE: Mutex<Vec<Live>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static LEFT_TO_CALLER: AtomicBool = AtomicBool::new(false);
static HANDLER: OnceLock<bool> = OnceLock::new();

fn live() -> MutexGuard<'static, Vec<Live>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// One driver process in the list; dropping it takes the process off (once it is killed or
/// reaped by its owner).
pub(crate) struct Registration {
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        live().retain(|l| l.id != self.id);
    }
}

/// Lists a driver process (the leader of its own process group) and its socket directory,
/// installing the signal handler first if this is the first driver of the process.
pub(crate) fn register(pid: u32, socket_dir: PathBuf) -> Registration {
    install_handler();
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    live().push(Live {
        id,
        pgid: pid as libc::pid_t,
        socket_dir,
    });
    Registration { id }
}

/// This process handles SIGINT and SIGTERM itself (and stops its drivers through their
/// `Drop` or [`end_all_drivers`]): drivergrpc installs no handler. Call it before the first
/// driver is started; afterwards the installed handler ignores the signals.
pub fn leave_signals_to_caller() {
    LEFT_TO_CALLER.store(true, Ordering::SeqCst);
}

/// Kills the process group of every running driver of this process (SIGKILL) and removes
/// their socket directories, at once. Returns how many there were. For a process about to
/// exit without running destructors.
pub fn end_all_drivers() -> usize {
    let all = std::mem::take(&mut *live());
    for l in all.iter().filter(|l| l.pgid > 0) {
        // SAFETY: plain syscall on the group the driver leads (spawned with process_group(0)).
        unsafe {
            libc::kill(-l.pgid, libc::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(&l.socket_dir);
    }
    all.len()
}

/// Whether the SIGINT/SIGTERM handler runs in this process (for tests and diagnostics).
pub fn signal_handler_installed() -> bool {
    HANDLER.get().copied().unwrap_or(false)
}

/// Starts, once per process, a thread that waits for SIGINT and SIGTERM (on a runtime of its
/// own, so it works whatever runtime, or none, the caller uses and however busy it is).
/// Returns once the handler is in place, so a signal right after the first spawn is caught.
fn install_handler() {
    if LEFT_TO_CALLER.load(Ordering::SeqCst) {
        return;
    }
    HANDLER.get_or_init(|| {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("lima-driver-signals".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                rt.block_on(async move {
                    use tokio::signal::unix::{signal, SignalKind};
                    let (mut term, mut int) =
                        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
                            (Ok(t), Ok(i)) => (t, i),
                            (Err(e), _) | (_, Err(e)) => {
                                let _ = ready_tx.send(Err(e.to_string()));
                                return;
                            }
                        };
                    let _ = ready_tx.send(Ok(()));
                    loop {
                        let sig = tokio::select! {
                            _ = term.recv() => libc::SIGTERM,
                            _ = int.recv() => libc::SIGINT,
                        };
                        if LEFT_TO_CALLER.load(Ordering::SeqCst) {
                            continue;
                        }
                        end_all_drivers();
                        die_of(sig);
                    }
                });
            });
        let installed = match spawned {
            Ok(_) => ready_rx.recv_timeout(Duration::from_secs(5)),
            Err(e) => Ok(Err(e.to_string())),
        };
        match installed {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!(target: "lima_driver",
                    "cannot watch SIGINT/SIGTERM ({e}): an interrupted limactl may leave driver processes behind");
                false
            }
            Err(_) => false,
        }
    });
}

/// Ends the process as the signal's default action would (the shell then sees 128 + sig).
fn die_of(sig: libc::c_int) -> ! {
    // SAFETY: restoring the default action and raising the signal are plain syscalls.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
    std::process::exit(128 + sig)
}
