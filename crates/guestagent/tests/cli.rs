//! The `lima-guestagent` binary: `--version`, and the JSON lines of `ports` and
//! `ports --watch` (run as built, with a deadline on every read).
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_lima-guestagent");

#[test]
fn version() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("lima-guestagent "), "{text}");
}

/// The line of `lines` about TCP `port`, parsed.
fn line_for(lines: &[serde_json::Value], port: u16) -> Option<&serde_json::Value> {
    lines
        .iter()
        .find(|v| v["proto"] == "tcp" && v["port"] == port)
}

#[test]
fn ports_prints_json_lines_with_the_listener_fields() {
    let sock = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let out = Command::new(BIN).arg("ports").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object a line"))
        .collect();
    let v = line_for(&lines, port).expect("our listener");
    let obj = v.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["family", "inode", "ip", "port", "proto", "uid"]);
    assert_eq!(v["family"], "ipv4");
    assert_eq!(v["ip"], "127.0.0.1");
    assert!(v["uid"].is_u64() && v["inode"].is_u64());
}

#[test]
fn ports_watch_prints_added_events() {
    let sock = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let mut child = Command::new(BIN)
        .args(["ports", "--watch", "--interval-ms", "50"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut found = None;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON object a line");
        if line_for(std::slice::from_ref(&v), port).is_some() {
            found = Some(v);
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(rx);
    reader.join().unwrap();
    let v = found.expect("an added event for our listener within 5 s");
    assert_eq!(v["event"], "added");
    assert_eq!(v["ip"], "127.0.0.1");
    assert_eq!(v["family"], "ipv4");
}
