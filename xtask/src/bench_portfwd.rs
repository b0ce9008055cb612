//! `cargo xtask bench portfwd`: guest→host port forwarding measured side by side on one VM
//! booted from the local image: this project's forwarder (host agent + guest agent over the
//! virtio-serial channel) with the internal and with the external qemu driver, `ssh -L`
//! through the instance's `ssh.config`, qemu's own user-net `hostfwd` (added over QMP), and the
//! raw virtio-serial channel with nothing behind it. iperf3 (TCP 1 and 4 streams, both
//! directions, UDP), round-trip latency and connection churn; medians over `--runs`, with
//! ratios. Always stops and deletes its instance.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use crate::bench_util::{self, median, now};
use crate::demo;

#[derive(clap::Args)]
pub struct Args {
    /// Runs of every measurement; the table shows medians.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Seconds of each iperf3 test (`iperf3 -t`, after one omitted warm-up second).
    #[arg(long, default_value_t = 5)]
    pub seconds: u32,
    /// Target bitrate of the UDP tests (`iperf3 -u -b`).
    #[arg(long, default_value = "100M")]
    pub udp_bitrate: String,
    /// MiB sent each way through the raw virtio-serial channel per run.
    #[arg(long, default_value_t = 256)]
    pub raw_mib: u64,
    /// Use debug builds (quick to build, slower forwarder) instead of release builds.
    #[arg(long)]
    pub debug: bool,
}

const NAME: &str = "bench";
/// Guest ports: iperf3's default, and the echo server for latency and churn.
const IPERF: u16 = 5201;
const ECHO: u16 = 5300;
/// Host ports of `ssh -L` and of qemu's hostfwd (the forwarder uses the guest's ports).
const SSH_OFFSET: u16 = 20000;
const HOSTFWD_OFFSET: u16 = 30000;
const VIRTIO_PORT: &str = "/dev/virtio-ports/io.lima-vm.guest_agent.0";

/// A TCP echo server (asyncio) for latency and churn, on every guest address: qemu's hostfwd
/// connects to the guest's ethernet address, not to its 127.0.0.1.
const ECHO_PY: &str = r#"import asyncio
async def echo(r, w):
    while True:
        d = await r.read(65536)
        if not d:
            break
        w.write(d)
        await w.drain()
    w.close()
async def main():
    s = await asyncio.start_server(echo, "0.0.0.0", 5300)
    async with s:
        await s.serve_forever()
asyncio.run(main())
"#;

/// The ways from the host to a guest port.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Via {
    Internal,
    External,
    Ssh,
    Hostfwd,
    Raw,
}

const PATHS: [Via; 5] = [
    Via::Internal,
    Via::External,
    Via::Ssh,
    Via::Hostfwd,
    Via::Raw,
];

impl Via {
    fn header(self) -> &'static str {
        match self {
            Via::Internal => "fwd-internal",
            Via::External => "fwd-external",
            Via::Ssh => "ssh -L",
            Via::Hostfwd => "qemu hostfwd",
            Via::Raw => "raw",
        }
    }

    /// The host port where `guest_port` is reachable through this path.
    fn host_port(self, guest_port: u16) -> u16 {
        match self {
            Via::Ssh => guest_port + SSH_OFFSET,
            Via::Hostfwd => guest_port + HOSTFWD_OFFSET,
            _ => guest_port,
        }
    }

    fn has_udp(self) -> bool {
        !matches!(self, Via::Ssh | Via::Raw)
    }
}

/// One table row: a measurement.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Row {
    Tcp1Up,
    Tcp1Down,
    Tcp4Up,
    Tcp4Down,
    Latency,
    Churn,
    UdpUpRate,
    UdpUpLoss,
    UdpDownRate,
    UdpDownLoss,
}

const ROWS: [Row; 10] = [
    Row::Tcp1Up,
    Row::Tcp1Down,
    Row::Tcp4Up,
    Row::Tcp4Down,
    Row::Latency,
    Row::Churn,
    Row::UdpUpRate,
    Row::UdpUpLoss,
    Row::UdpDownRate,
    Row::UdpDownLoss,
];

impl Row {
    /// "up" is host→guest (iperf3's default: the host client sends), "down" guest→host (-R).
    fn label(self) -> &'static str {
        match self {
            Row::Tcp1Up => "TCP 1 stream  host→guest Gbit/s",
            Row::Tcp1Down => "TCP 1 stream  guest→host Gbit/s",
            Row::Tcp4Up => "TCP 4 streams host→guest Gbit/s",
            Row::Tcp4Down => "TCP 4 streams guest→host Gbit/s",
            Row::Latency => "round trip, 1 byte       µs",
            Row::Churn => "connections/s (1 B each way)",
            Row::UdpUpRate => "UDP host→guest recv  Mbit/s",
            Row::UdpUpLoss => "UDP host→guest loss       %",
            Row::UdpDownRate => "UDP guest→host recv  Mbit/s",
            Row::UdpDownLoss => "UDP guest→host loss       %",
        }
    }

    fn format(self, v: f64) -> String {
        match self {
            Row::Tcp1Up | Row::Tcp1Down | Row::Tcp4Up | Row::Tcp4Down => format!("{v:.3}"),
            Row::Latency | Row::Churn => format!("{v:.0}"),
            Row::UdpUpRate | Row::UdpDownRate => format!("{v:.1}"),
            Row::UdpUpLoss | Row::UdpDownLoss => format!("{v:.2}"),
        }
    }
}

/// Every run's outcome of one (row, path) cell.
type Results = BTreeMap<(Row, Via), Vec<Result<f64, String>>>;

/// The instance and everything started beside it; dropping it kills the `ssh -L`, deletes the
/// instance (stopping it) and removes the temporary `LIMA_HOME`, even when a step failed.
struct Bench {
    exe: PathBuf,
    home: PathBuf,
    driver: PathBuf,
    external: bool,
    ssh: Option<duct::Handle>,
}

impl Bench {
    fn inst(&self) -> PathBuf {
        self.home.join(NAME)
    }

    /// Runs `script` in the guest in the background, its output captured for errors.
    fn start_in_guest(&self, script: &str) -> Result<duct::Handle> {
        Ok(self
            .limactl(&["shell", NAME, "sh", "-c", script])
            .stderr_to_stdout()
            .stdout_capture()
            .unchecked()
            .start()?)
    }

    fn limactl(&self, args: &[&str]) -> duct::Expression {
        let e = demo::limactl(&self.exe, &self.home, args);
        if self.external {
            e.env("LIMA_DRIVERS_PATH", &self.driver)
                .env("LIMA_DISABLE_INTERNAL_DRIVERS", "qemu")
        } else {
            e
        }
    }

    fn shell(&self, script: &str) -> Result<String> {
        self.limactl(&["shell", NAME, "sh", "-c", script])
            .stderr_to_stdout()
            .read()
            .with_context(|| format!("limactl shell {NAME} sh -c {script:?}"))
    }

    fn log_len(&self) -> u64 {
        std::fs::metadata(self.inst().join("ha.stderr.log")).map_or(0, |m| m.len())
    }

    /// Starts iperf3's server and the echo server in the guest (after a boot), then waits until
    /// the forwarder reports both ports in `ha.stderr.log` (only lines after `since` count).
    fn start_servers(&self, since: u64) -> Result<()> {
        self.shell(&format!(
            "iperf3 -s -D -p {IPERF} && echo {} | base64 -d > /tmp/echo.py && \
             (nohup python3 /tmp/echo.py >/dev/null 2>&1 &)",
            base64(ECHO_PY.as_bytes())
        ))?;
        self.wait_forwarded(since, &[IPERF, ECHO])
    }

    fn wait_forwarded(&self, since: u64, ports: &[u16]) -> Result<()> {
        let log = self.inst().join("ha.stderr.log");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read(&log).unwrap_or_default();
            let start = if (text.len() as u64) < since {
                0
            } else {
                since as usize
            };
            let text = String::from_utf8_lossy(&text[start..]);
            let forwarded = |port: u16| {
                let to = format!(" to 127.0.0.1:{port}");
                // The last word on the port wins: "Stopping forwarding" undoes "Forwarding".
                text.lines()
                    .rfind(|l| l.trim_end().ends_with(&to))
                    .is_some_and(|l| l.contains("Forwarding TCP from"))
            };
            if ports.iter().all(|p| forwarded(*p)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the forwarder did not report guest ports {ports:?} in {} within 60 s",
                    log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(ssh) = self.ssh.take() {
            let _ = ssh.kill();
        }
        if self.inst().exists() {
            eprintln!("==> bench portfwd: deleting the instance");
            let _ = self
                .limactl(&["delete", "-f", NAME])
                .stdout_null()
                .stderr_null()
                .unchecked()
                .run();
            // Whatever survived a failed delete.
            for file in ["ha.pid", "qemu.pid"] {
                if let Ok(pid) = std::fs::read_to_string(self.inst().join(file)) {
                    let _ = duct::cmd!("kill", "-KILL", pid.trim())
                        .stderr_null()
                        .unchecked()
                        .run();
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

pub fn run(args: Args) -> Result<()> {
    if args.runs == 0 || args.seconds == 0 {
        bail!("--runs and --seconds must be at least 1");
    }
    for tool in ["iperf3", "ssh"] {
        duct::cmd!("sh", "-c", format!("command -v {tool}"))
            .stdout_null()
            .run()
            .with_context(|| {
                format!("{tool} is not installed on the host (.ci/run installs it)")
            })?;
    }
    let (exe, driver) = build(!args.debug)?;
    let yaml = demo::ensure_local_image()?;
    let started_at = now();
    let mut reproduce = format!(
        "cargo xtask bench portfwd --runs {} --seconds {} --udp-bitrate {} --raw-mib {}",
        args.runs, args.seconds, args.udp_bitrate, args.raw_mib
    );
    if args.debug {
        reproduce.push_str(" --debug");
    }

    // Short path: unix sockets in the instance dir must stay under 108 bytes.
    let home = PathBuf::from(format!("/tmp/lima-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
    let mut bench = Bench {
        exe,
        home,
        driver,
        external: false,
        ssh: None,
    };
    let bench_yaml = write_yaml(&yaml, &bench.home)?;

    let mut results = Results::new();
    let mut notes: Vec<String> = vec![bench_util::host_line()];
    let load = |what: &str, notes: &mut Vec<String>| {
        notes.push(format!(
            "load average {}: {}",
            what,
            bench_util::load_average()
        ));
    };

    // Phase 1: the internal driver; ssh -L and hostfwd on the same VM.
    eprintln!("==> bench portfwd: starting the instance (internal qemu driver)");
    let t = Instant::now();
    start_instance(
        &bench,
        &[
            "start",
            "--name",
            NAME,
            "--tty=false",
            bench_yaml.to_str().context("non-UTF-8 path")?,
        ],
        "internal",
    )?;
    eprintln!("    ready in {:.1?}", t.elapsed());
    bench.start_servers(0)?;
    qmp(
        &bench.inst().join("qmp.sock"),
        &[
            hostfwd("tcp", IPERF),
            hostfwd("tcp", ECHO),
            hostfwd("udp", IPERF),
        ],
    )
    .context("adding qemu hostfwd rules over QMP")?;
    bench.ssh = Some(start_ssh_forward(&bench.inst())?);

    load(
        "before phase 1 (internal, ssh -L, hostfwd, raw)",
        &mut notes,
    );
    for run in 0..args.runs {
        for path in [Via::Internal, Via::Ssh, Via::Hostfwd] {
            eprintln!("==> run {}/{}: {}", run + 1, args.runs, path.header());
            measure(path, &args, &mut results);
        }
    }
    eprintln!("==> raw virtio-serial channel");
    match raw_phase(&bench, &args, &mut results) {
        Ok(()) => {}
        Err(e) => {
            let e = format!("{e:#}");
            eprintln!("    raw channel: {e}");
            for row in [Row::Tcp1Up, Row::Tcp1Down] {
                results
                    .entry((row, Via::Raw))
                    .or_default()
                    .push(Err(e.clone()));
            }
        }
    }
    if let Some(ssh) = bench.ssh.take() {
        let _ = ssh.kill();
    }

    // Phase 2: the same instance restarted with qemu as an external driver. A failure here
    // still prints phase 1's figures, with the error in the external column.
    eprintln!("==> bench portfwd: restarting with the external qemu driver");
    let restarted = (|| -> Result<()> {
        bench
            .limactl(&["stop", NAME])
            .stdout_null()
            .stderr_null()
            .run()
            .context("limactl stop")?;
        bench.external = true;
        let since = bench.log_len();
        start_instance(&bench, &["start", NAME, "--tty=false"], "external")?;
        bench.start_servers(since)
    })();
    match restarted {
        Ok(()) => {
            load("before phase 2 (external)", &mut notes);
            for run in 0..args.runs {
                eprintln!(
                    "==> run {}/{}: {}",
                    run + 1,
                    args.runs,
                    Via::External.header()
                );
                measure(Via::External, &args, &mut results);
            }
        }
        Err(e) => {
            let e = format!("{e:#}");
            eprintln!("    {e}");
            for row in ROWS {
                results
                    .entry((row, Via::External))
                    .or_default()
                    .push(Err(e.clone()));
            }
        }
    }
    load("at the end", &mut notes);

    print_report(&args, &results, &notes, &reproduce, &started_at);
    Ok(())
}

/// Builds limactl, the guest agent and `lima-driver-qemu`; returns the paths of limactl and
/// the driver.
fn build(release: bool) -> Result<(PathBuf, PathBuf)> {
    let dir = bench_util::build(release, true)?;
    Ok((dir.join("limactl"), dir.join("lima-driver-qemu")))
}

/// `limactl start ...`, checking that it succeeded with the qemu driver in the given form
/// ("internal" or "external"), as its "Using the qemu (...) driver" line says.
fn start_instance(bench: &Bench, argv: &[&str], form: &str) -> Result<()> {
    let out = bench
        .limactl(argv)
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()
        .context("running limactl start")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "limactl {} failed ({}):\n{text}",
            argv.join(" "),
            out.status
        );
    }
    if !text.contains(&format!("qemu ({form}")) {
        bail!("limactl start did not use the {form} qemu driver:\n{text}");
    }
    Ok(())
}

/// A copy of the local image's lima.yaml with local paths absolute and a static UDP rule for
/// iperf3's port (iperf3 binds its UDP socket only when a test starts, so the forward must
/// exist beforehand).
fn write_yaml(yaml: &Path, dir: &Path) -> Result<PathBuf> {
    let mut v = bench_util::image_yaml(yaml)?;
    let rules: serde_yaml::Value = serde_yaml::from_str(&format!(
        "[{{guestPort: {IPERF}, proto: udp, static: true}}]"
    ))?;
    v["portForwards"] = rules;
    let out = dir.join("bench.yaml");
    std::fs::write(&out, serde_yaml::to_string(&v)?)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(out)
}

fn hostfwd(proto: &str, port: u16) -> Value {
    json!({
        "execute": "human-monitor-command",
        "arguments": {
            "command-line": format!(
                "hostfwd_add net0 {proto}:127.0.0.1:{}-:{port}",
                port + HOSTFWD_OFFSET
            )
        }
    })
}

/// A tiny synchronous QMP client: greeting, `qmp_capabilities`, then each command in turn;
/// their `return` values (an HMP command's non-empty output counts as its error).
fn qmp(sock: &Path, commands: &[Value]) -> Result<Vec<Value>> {
    let stream =
        UnixStream::connect(sock).with_context(|| format!("connecting to {}", sock.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut w = stream.try_clone()?;
    let mut lines = BufReader::new(stream).lines();
    let mut next = || -> Result<Value> {
        loop {
            let line = lines
                .next()
                .context("QMP connection closed")?
                .context("reading QMP")?;
            let v: Value =
                serde_json::from_str(&line).with_context(|| format!("bad QMP line {line:?}"))?;
            if v.get("event").is_none() {
                return Ok(v);
            }
        }
    };
    let greeting = next()?;
    if greeting.get("QMP").is_none() {
        bail!("not a QMP greeting: {greeting}");
    }
    let mut answers = vec![];
    for cmd in std::iter::once(&json!({"execute": "qmp_capabilities"})).chain(commands) {
        writeln!(w, "{cmd}")?;
        let a = next()?;
        if let Some(e) = a.get("error") {
            bail!("QMP {}: {e}", cmd["execute"]);
        }
        let ret = a.get("return").cloned().unwrap_or(Value::Null);
        if cmd["execute"] == "human-monitor-command" && ret.as_str().is_some_and(|s| !s.is_empty())
        {
            bail!("{}: {}", cmd["arguments"]["command-line"], ret);
        }
        answers.push(ret);
    }
    Ok(answers[1..].to_vec())
}

/// `ssh -L` for iperf3's and the echo server's ports, on its own connection (not the
/// instance's ControlMaster, which `limactl shell` uses).
fn start_ssh_forward(inst: &Path) -> Result<duct::Handle> {
    let cfg = inst.join("ssh.config");
    let mut argv: Vec<String> = [
        "-F",
        cfg.to_str().context("non-UTF-8 path")?,
        "-o",
        "ControlMaster=no",
        "-o",
        "ControlPath=none",
        "-o",
        "ExitOnForwardFailure=yes",
        "-N",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for port in [IPERF, ECHO] {
        argv.push("-L".into());
        argv.push(format!(
            "127.0.0.1:{}:127.0.0.1:{port}",
            Via::Ssh.host_port(port)
        ));
    }
    argv.push(format!("lima-{NAME}"));
    let handle = duct::cmd("ssh", &argv)
        .stdin_null()
        .stdout_null()
        .start()
        .context("starting ssh -L")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let echo: SocketAddr = ([127, 0, 0, 1], Via::Ssh.host_port(ECHO)).into();
    while TcpStream::connect_timeout(&echo, Duration::from_secs(1)).is_err() {
        if let Some(out) = handle.try_wait()? {
            bail!("ssh -L exited: {}", out.status);
        }
        if Instant::now() > deadline {
            let _ = handle.kill();
            bail!("ssh -L did not listen on {echo} within 30 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(handle)
}

/// One run of every measurement of `path`; failures are recorded, not fatal.
fn measure(path: Via, args: &Args, results: &mut Results) {
    let mut record = |row: Row, r: Result<f64>| {
        let r = r.map_err(|e| format!("{e:#}"));
        match &r {
            Ok(v) => eprintln!("    {:<34} {}", row.label(), row.format(*v)),
            Err(e) => eprintln!("    {:<34} error: {e}", row.label()),
        }
        results.entry((row, path)).or_default().push(r);
    };
    let port = path.host_port(IPERF);
    let tcp = |extra: &[&str]| -> Result<f64> {
        let v = iperf(port, args.seconds, extra)?;
        v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .map(|b| b / 1e9)
            .context("no end.sum_received.bits_per_second in iperf3's output")
    };
    record(Row::Tcp1Up, tcp(&[]));
    record(Row::Tcp1Down, tcp(&["-R"]));
    record(Row::Tcp4Up, tcp(&["-P", "4"]));
    record(Row::Tcp4Down, tcp(&["-P", "4", "-R"]));
    let echo = path.host_port(ECHO);
    record(Row::Latency, latency(echo));
    record(Row::Churn, churn(echo, Duration::from_secs(3)));
    if path.has_udp() {
        for (extra, rate, loss) in [
            (&[][..], Row::UdpUpRate, Row::UdpUpLoss),
            (&["-R"][..], Row::UdpDownRate, Row::UdpDownLoss),
        ] {
            let mut argv = vec!["-u", "-b", args.udp_bitrate.as_str()];
            argv.extend_from_slice(extra);
            match udp(port, args.seconds, &argv) {
                Ok((mbit, lost)) => {
                    record(rate, Ok(mbit));
                    record(loss, Ok(lost));
                }
                Err(e) => {
                    let e = format!("{e:#}");
                    record(rate, Err(anyhow!("{e}")));
                    record(loss, Err(anyhow!("{e}")));
                }
            }
        }
    }
}

/// UDP: (received Mbit/s, loss %). iperf3's `end.sum` counts the bytes sent; the receiver's
/// loss is in `lost_percent`.
fn udp(port: u16, seconds: u32, extra: &[&str]) -> Result<(f64, f64)> {
    let v = iperf(port, seconds, extra)?;
    let sum = &v["end"]["sum"];
    let bps = sum["bits_per_second"]
        .as_f64()
        .context("no end.sum.bits_per_second in iperf3's UDP output")?;
    let lost = sum["lost_percent"]
        .as_f64()
        .context("no end.sum.lost_percent in iperf3's UDP output")?;
    Ok((bps * (1.0 - lost / 100.0) / 1e6, lost))
}

/// One iperf3 client run against 127.0.0.1:`port` (JSON output), killed if it hangs.
fn iperf(port: u16, seconds: u32, extra: &[&str]) -> Result<Value> {
    let mut argv: Vec<String> = vec![
        "-c".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "-t".into(),
        seconds.to_string(),
        "-O".into(),
        "1".into(),
        "-J".into(),
        "--connect-timeout".into(),
        "10000".into(),
    ];
    argv.extend(extra.iter().map(|s| s.to_string()));
    let what = format!("iperf3 {}", argv.join(" "));
    let handle = duct::cmd("iperf3", &argv)
        .stdin_null()
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .start()
        .with_context(|| what.clone())?;
    let deadline = Instant::now() + Duration::from_secs(u64::from(seconds) + 40);
    let out = loop {
        if let Some(out) = handle.try_wait()? {
            break out.clone();
        }
        if Instant::now() > deadline {
            let _ = handle.kill();
            bail!("{what}: no result within {} s", u64::from(seconds) + 40);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let v: Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "{what}: {} (no JSON: {})",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        bail!("iperf3: {e}");
    }
    Ok(v)
}

/// Median round trip of 1 byte to the echo server over one connection (µs), after a warm-up.
fn latency(port: u16) -> Result<f64> {
    let mut c = connect(port)?;
    let mut rtts = vec![];
    let start = Instant::now();
    let mut byte = [0u8; 1];
    for i in 0.. {
        let t = Instant::now();
        c.write_all(b"x")?;
        c.read_exact(&mut byte).context("reading the echo")?;
        if i >= 20 {
            rtts.push(t.elapsed().as_secs_f64() * 1e6);
        }
        if start.elapsed() > Duration::from_secs(2) && rtts.len() >= 50 {
            break;
        }
    }
    Ok(median(&mut rtts))
}

/// Short connections per second for `dur`: connect, 1 byte each way, close.
fn churn(port: u16, dur: Duration) -> Result<f64> {
    let start = Instant::now();
    let mut n = 0u64;
    let mut byte = [0u8; 1];
    while start.elapsed() < dur {
        let mut c = connect(port).with_context(|| format!("connection {}", n + 1))?;
        c.write_all(b"x")?;
        c.read_exact(&mut byte)
            .with_context(|| format!("connection {}: reading the echo", n + 1))?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn connect(port: u16) -> Result<TcpStream> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let c = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .with_context(|| format!("connecting to {addr}"))?;
    c.set_nodelay(true)?;
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(c)
}

/// The raw channel: the guest agent's virtio-serial port with no multiplexer and no TCP behind
/// it. The host agent holds the only connection qemu's chardev socket server accepts (on
/// `ga.sock`), so: stop the guest agent, point the chardev `qga0` at a fresh socket with QMP's
/// `chardev-change` (qemu closes the host agent's connection; it retries `ga.sock`, which is
/// gone), move bytes with `dd` in the guest and a plain reader/writer on the host, then point
/// `qga0` back at `ga.sock` and start the guest agent (the host agent reconnects).
fn raw_phase(bench: &Bench, args: &Args, results: &mut Results) -> Result<()> {
    let inst = bench.inst();
    let qmp_sock = inst.join("qmp.sock");
    let raw_sock = inst.join("raw.sock");
    let change = |path: &Path| {
        json!({"execute": "chardev-change", "arguments": {"id": "qga0", "backend": {
            "type": "socket", "data": {
                "addr": {"type": "unix", "data": {"path": path.display().to_string()}},
                "server": true, "wait": false}}}})
    };
    bench.shell("sudo systemctl stop lima-guestagent")?;
    let swapped = qmp(&qmp_sock, &[change(&raw_sock)]).context("QMP chardev-change to raw.sock");
    let measured = swapped.and_then(|_| {
        let mut conn = UnixStream::connect(&raw_sock)
            .with_context(|| format!("connecting to {}", raw_sock.display()))?;
        conn.set_read_timeout(Some(Duration::from_secs(60)))?;
        for run in 0..args.runs {
            let up = raw_up(bench, &mut conn, &qmp_sock, args.raw_mib);
            let down = raw_down(bench, &mut conn, args.raw_mib);
            for (row, r) in [(Row::Tcp1Up, up), (Row::Tcp1Down, down)] {
                let r = r.map_err(|e| format!("{e:#}"));
                let dir = if row == Row::Tcp1Up {
                    "host→guest"
                } else {
                    "guest→host"
                };
                match &r {
                    Ok(v) => eprintln!("    run {} {dir} Gbit/s {v:.3}", run + 1),
                    Err(e) => eprintln!("    run {} {dir}: error: {e}", run + 1),
                }
                results.entry((row, Via::Raw)).or_default().push(r);
            }
        }
        Ok(())
    });
    // Put everything back whatever happened, then report the first failure.
    let back = qmp(&qmp_sock, &[change(&inst.join("ga.sock"))])
        .context("QMP chardev-change back to ga.sock");
    let since = bench.log_len();
    let agent = bench.shell("sudo systemctl start lima-guestagent");
    measured?;
    back?;
    agent?;
    bench
        .wait_forwarded(since, &[IPERF, ECHO])
        .context("forwarding after the raw measurement")
}

/// Host→guest: the guest reads `mib` MiB with dd, then writes one byte back; timed on the host
/// from the first byte written to that byte's arrival (after the guest opened the port).
fn raw_up(bench: &Bench, conn: &mut UnixStream, qmp_sock: &Path, mib: u64) -> Result<f64> {
    let script = format!(
        "sudo sh -c 'dd if={VIRTIO_PORT} of=/dev/null bs=64k count={} iflag=fullblock \
         status=none && printf x > {VIRTIO_PORT}'",
        mib * 16
    );
    let guest = bench.start_in_guest(&script)?;
    // Wait until dd has the port open, or the bytes would wait in qemu with nobody reading.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let chardevs = qmp(qmp_sock, &[json!({"execute": "query-chardev"})])?;
        let open = chardevs[0]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["label"] == "qga0"))
            .and_then(|c| c["frontend-open"].as_bool())
            .unwrap_or(false);
        if open {
            break;
        }
        if let Some(out) = guest.try_wait()? {
            bail!(
                "guest dd ended early: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        if Instant::now() > deadline {
            let _ = guest.kill();
            bail!("the guest did not open {VIRTIO_PORT} within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let buf = vec![0u8; 64 * 1024];
    let t = Instant::now();
    for _ in 0..mib * 16 {
        conn.write_all(&buf)?;
    }
    let mut ack = [0u8; 1];
    conn.read_exact(&mut ack)
        .context("waiting for the guest's byte after its dd")?;
    let secs = t.elapsed().as_secs_f64();
    let out = guest.wait()?;
    if !out.status.success() {
        bail!("guest dd: {}", String::from_utf8_lossy(&out.stdout));
    }
    Ok((mib * 1024 * 1024 * 8) as f64 / secs / 1e9)
}

/// Guest→host: the guest writes `mib` MiB with dd; timed on the host from the first byte read
/// to the last.
fn raw_down(bench: &Bench, conn: &mut UnixStream, mib: u64) -> Result<f64> {
    let script = format!(
        "sudo dd if=/dev/zero of={VIRTIO_PORT} bs=64k count={} status=none",
        mib * 16
    );
    let guest = bench.start_in_guest(&script)?;
    let total = mib * 1024 * 1024;
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    let mut first = None;
    while got < total {
        let n = conn.read(&mut buf).context("reading the guest's bytes")?;
        if n == 0 {
            bail!("raw.sock closed after {got} bytes");
        }
        first.get_or_insert_with(Instant::now);
        got += n as u64;
    }
    let secs = first.map_or(0.0, |t| t.elapsed().as_secs_f64());
    let out = guest.wait()?;
    if !out.status.success() {
        bail!("guest dd: {}", String::from_utf8_lossy(&out.stdout));
    }
    Ok((total * 8) as f64 / secs / 1e9)
}

/// A cell's median over its successful runs with the failed runs' errors, or the first error
/// when every run failed.
fn cell(results: &Results, row: Row, path: Via) -> Option<Result<(f64, Vec<String>), String>> {
    bench_util::summarize(results.get(&(row, path))?)
}

fn print_report(args: &Args, results: &Results, notes: &[String], reproduce: &str, date: &str) {
    let mut errors: Vec<String> = vec![];
    let mut error_ref = |e: &str| {
        let i = match errors.iter().position(|x| x == e) {
            Some(i) => i,
            None => {
                errors.push(e.to_string());
                errors.len() - 1
            }
        };
        format!("error[{}]", i + 1)
    };
    println!();
    println!(
        "guest→host port forwarding, medians of {} run(s), iperf3 -t {} (+1 s omitted), {} build",
        args.runs,
        args.seconds,
        if args.debug { "debug" } else { "release" }
    );
    println!("date: {date}");
    println!("reproduce: {reproduce}");
    println!();
    let ratios = ["int/hostfwd", "int/ssh", "ext/int"];
    print!("{:<33}", "");
    for p in PATHS {
        print!(" {:>13}", p.header());
    }
    for r in ratios {
        print!(" {r:>11}");
    }
    println!();
    let mut partial: Vec<String> = vec![];
    for row in ROWS {
        print!("{:<33}", row.label());
        let mut med: BTreeMap<Via, f64> = BTreeMap::new();
        for p in PATHS {
            let text = match cell(results, row, p) {
                None => "n/a".to_string(),
                Some(Err(e)) => error_ref(&e),
                Some(Ok((v, failed))) => {
                    med.insert(p, v);
                    if !failed.is_empty() {
                        partial.push(format!(
                            "{} / {}: {} of {} runs failed (median of the rest): {}",
                            row.label(),
                            p.header(),
                            failed.len(),
                            runs_of(results, row, p),
                            failed.join("; ")
                        ));
                        format!("{}*", row.format(v))
                    } else {
                        row.format(v)
                    }
                }
            };
            print!(" {text:>13}");
        }
        for (a, b) in [
            (Via::Internal, Via::Hostfwd),
            (Via::Internal, Via::Ssh),
            (Via::External, Via::Internal),
        ] {
            let text = match (med.get(&a), med.get(&b)) {
                (Some(x), Some(y)) if *y != 0.0 => format!("{:.2}", x / y),
                _ => "-".into(),
            };
            print!(" {text:>11}");
        }
        println!();
    }
    println!();
    for line in [
        format!(
            "fwd-internal, fwd-external: this project's forwarder (host agent <-> guest agent \
             over virtio-serial) at 127.0.0.1:{IPERF} and :{ECHO},"
        ),
        "  with the internal, then the external (gRPC) qemu driver (a second boot of the \
         same instance)"
            .into(),
        "ssh -L: a dedicated ssh connection (no ControlMaster) from the instance's ssh.config"
            .into(),
        "qemu hostfwd: slirp's hostfwd_add over QMP (tcp and udp)".into(),
        "raw: the virtio-serial byte stream alone, no multiplexer, no TCP (guest agent \
         stopped, chardev qga0 switched over QMP"
            .into(),
        format!(
            "  to a plain unix socket, dd in the guest, {} MiB per run); shown in the \
             1-stream rows",
            args.raw_mib
        ),
        "round trip: lower is better (and so are its ratios); everything else: higher is \
         better. Ratios are of medians."
            .into(),
    ] {
        println!("{line}");
    }
    for p in &partial {
        println!("* {p}");
    }
    for n in notes {
        println!("{n}");
    }
    for (i, e) in errors.iter().enumerate() {
        println!("error[{}]: {e}", i + 1);
    }
}

fn runs_of(results: &Results, row: Row, path: Via) -> usize {
    results.get(&(row, path)).map_or(0, Vec::len)
}

/// Standard base64, to pass a script through `limactl shell ... sh -c` without quoting.
fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
    }
}
