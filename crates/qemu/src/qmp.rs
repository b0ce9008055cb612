//! A minimal QMP client over the instance's `qmp.sock`: greeting, `qmp_capabilities`, one
//! command, its answer (asynchronous events in between are skipped).

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("QMP socket {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("QMP socket {0}: no answer in time")]
    Timeout(String),
    #[error("QMP socket {0}: connection closed")]
    Closed(String),
    #[error("QMP {command}: {class}: {desc}")]
    Command {
        command: String,
        class: String,
        desc: String,
    },
    #[error("QMP socket {path}: bad message {line:?}")]
    Protocol { path: String, line: String },
}

/// Runs one QMP command and returns its `return` value.
pub async fn execute(sock: &Path, command: &str, args: Option<Value>) -> Result<Value, QmpError> {
    execute_within(sock, command, args, Duration::from_secs(10)).await
}

/// [`execute`] with its own time limit (saving a VM's RAM takes longer than most commands).
pub async fn execute_within(
    sock: &Path,
    command: &str,
    args: Option<Value>,
    limit: Duration,
) -> Result<Value, QmpError> {
    let p = sock.display().to_string();
    tokio::time::timeout(limit, execute_inner(sock, command, args))
        .await
        .map_err(|_| QmpError::Timeout(p))?
}

/// An HMP command line through QMP's `human-monitor-command`; returns the monitor's text
/// (HMP reports its own errors in that text, not as a QMP error).
pub async fn human_monitor_command(
    sock: &Path,
    command_line: &str,
    limit: Duration,
) -> Result<String, QmpError> {
    let v = execute_within(
        sock,
        "human-monitor-command",
        Some(json!({ "command-line": command_line })),
        limit,
    )
    .await?;
    Ok(v.as_str().unwrap_or("").to_string())
}

async fn execute_inner(sock: &Path, command: &str, args: Option<Value>) -> Result<Value, QmpError> {
    let p = sock.display().to_string();
    let io = |source| QmpError::Io {
        path: p.clone(),
        source,
    };
    let stream = UnixStream::connect(sock).await.map_err(io)?;
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    let mut next = async || -> Result<Value, QmpError> {
        loop {
            let line = lines
                .next_line()
                .await
                .map_err(|source| QmpError::Io {
                    path: p.clone(),
                    source,
                })?
                .ok_or_else(|| QmpError::Closed(p.clone()))?;
            let v: Value = serde_json::from_str(&line).map_err(|_| QmpError::Protocol {
                path: p.clone(),
                line: line.clone(),
            })?;
            if v.get("event").is_none() {
                return Ok(v);
            }
        }
    };
    let greeting = next().await?;
    if greeting.get("QMP").is_none() {
        return Err(QmpError::Protocol {
            path: p.clone(),
            line: greeting.to_string(),
        });
    }
    for (cmd, a) in [("qmp_capabilities", None), (command, args)] {
        let mut msg = json!({ "execute": cmd });
        if let Some(a) = a {
            msg["arguments"] = a;
        }
        let mut line = msg.to_string();
        line.push('\n');
        w.write_all(line.as_bytes()).await.map_err(io)?;
        let answer = next().await?;
        if let Some(err) = answer.get("error") {
            return Err(QmpError::Command {
                command: cmd.to_string(),
                class: err["class"].as_str().unwrap_or("").to_string(),
                desc: err["desc"].as_str().unwrap_or("").to_string(),
            });
        }
        if cmd == command {
            return Ok(answer.get("return").cloned().unwrap_or(Value::Null));
        }
    }
    unreachable!("the loop returns on the second command")
}

/// Asks the guest to power off (ACPI power button).
pub async fn system_powerdown(sock: &Path) -> Result<(), QmpError> {
    execute(sock, "system_powerdown", None).await.map(|_| ())
}

/// Ends qemu at once.
pub async fn quit(sock: &Path) -> Result<(), QmpError> {
    match execute(sock, "quit", None).await {
        // qemu may close the socket before answering.
        Ok(_) | Err(QmpError::Closed(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `query-status`: e.g. `running`, `paused`, `shutdown`.
pub async fn query_status(sock: &Path) -> Result<String, QmpError> {
    let v = execute(sock, "query-status", None).await?;
    Ok(v["status"].as_str().unwrap_or("").to_string())
}

/// Sets the VNC password (`change-vnc-password`, as upstream's go-qemu does; `set_password`
/// where a newer qemu dropped the former).
pub async fn change_vnc_password(sock: &Path, password: &str) -> Result<(), QmpError> {
    match execute(
        sock,
        "change-vnc-password",
        Some(json!({ "password": password })),
    )
    .await
    {
        Err(QmpError::Command { class, .. }) if class == "CommandNotFound" => execute(
            sock,
            "set_password",
            Some(json!({ "protocol": "vnc", "password": password })),
        )
        .await
        .map(|_| ()),
        other => other.map(|_| ()),
    }
}

/// The VNC server's port (`query-vnc`'s `service`), where qemu picked one from a `to=` range.
pub async fn vnc_service(sock: &Path) -> Result<String, QmpError> {
    let v = execute(sock, "query-vnc", None).await?;
    v.get("service")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| QmpError::Protocol {
            path: sock.display().to_string(),
            line: v.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    /// A scripted QMP server: checks the client's messages and answers like qemu.
    async fn fake_qemu(listener: UnixListener, fail: bool) -> Vec<String> {
        let (s, _) = listener.accept().await.unwrap();
        let (r, mut w) = s.into_split();
        let mut lines = BufReader::new(r).lines();
        w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
            .await
            .unwrap();
        let mut got = vec![];
        while let Some(l) = lines.next_line().await.unwrap() {
            got.push(l.clone());
            let v: Value = serde_json::from_str(&l).unwrap();
            let reply = if v["execute"] == "qmp_capabilities" {
                "{\"return\": {}}\n".to_string()
            } else if fail {
                "{\"error\": {\"class\": \"GenericError\", \"desc\": \"nope\"}}\n".to_string()
            } else {
                // An event first, which the client must skip.
                "{\"event\": \"POWERDOWN\", \"timestamp\": {}}\n{\"return\": {\"status\": \"running\"}}\n".to_string()
            };
            w.write_all(reply.as_bytes()).await.unwrap();
        }
        got
    }

    #[tokio::test]
    async fn talks_qmp() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qmp.sock");
        let server = tokio::spawn(fake_qemu(UnixListener::bind(&sock).unwrap(), false));
        assert_eq!(query_status(&sock).await.unwrap(), "running");
        let got = server.await.unwrap();
        assert_eq!(got.len(), 2);
        assert!(got[0].contains("qmp_capabilities"));
        assert!(got[1].contains("query-status"));
    }

    #[tokio::test]
    async fn reports_command_errors_and_missing_socket() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qmp.sock");
        let server = tokio::spawn(fake_qemu(UnixListener::bind(&sock).unwrap(), true));
        let e = system_powerdown(&sock).await.unwrap_err().to_string();
        assert!(e.contains("system_powerdown") && e.contains("nope"), "{e}");
        server.await.unwrap();
        let e = quit(&dir.path().join("missing.sock")).await.unwrap_err();
        assert!(e.to_string().contains("missing.sock"), "{e}");
    }

    /// A real qemu with no machine (nothing boots): `-display vnc=...,password=on` as the
    /// command line has it; the password is set and the port read over QMP, and a VNC client
    /// is offered VNC authentication there.
    #[tokio::test]
    async fn vnc_password_and_port_on_a_real_qemu() {
        let bin = crate::cmdline::qemu_binary(limatype::Arch::host().as_str());
        if crate::machine::find_in_path(&bin).is_none() {
            eprintln!("SKIPPED: {bin} is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qmp.sock");
        let display = crate::cmdline::display_value("vnc", "127.0.0.1:40,to=99");
        let mut child = tokio::process::Command::new(&bin)
            .args(["-machine", "none", "-nodefaults", "-display", &display])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", sock.display()))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if sock.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        change_vnc_password(&sock, "s3cretpw").await.unwrap();
        let port: u16 = vnc_service(&sock).await.unwrap().parse().unwrap();
        assert!((5940..=5999).contains(&port), "{port}");
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut version = [0u8; 12];
        tokio::io::AsyncReadExt::read_exact(&mut s, &mut version)
            .await
            .unwrap();
        assert!(version.starts_with(b"RFB 003."), "{version:?}");
        s.write_all(b"RFB 003.008\n").await.unwrap();
        let mut n = [0u8; 1];
        tokio::io::AsyncReadExt::read_exact(&mut s, &mut n)
            .await
            .unwrap();
        let mut types = vec![0u8; n[0] as usize];
        tokio::io::AsyncReadExt::read_exact(&mut s, &mut types)
            .await
            .unwrap();
        assert_eq!(types, [2], "only VNC authentication");
        child.kill().await.unwrap();
    }
}
