//! Conversions between the `driver` types and the wire messages, errors included.

use std::path::PathBuf;

use driver::{Arch, DriverError, ErrorKind, Features, HostFacts, Info, Os, Status};
use tonic::Code;

use crate::pb;

/// Metadata key carrying the exact [`ErrorKind`] of a failed call.
pub const ERROR_KIND_METADATA: &str = "lima-error-kind";

pub fn code_for_kind(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidConfig => Code::InvalidArgument,
        ErrorKind::Unsupported => Code::Unimplemented,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Timeout => Code::DeadlineExceeded,
        ErrorKind::Cancelled => Code::Cancelled,
        ErrorKind::Internal => Code::Internal,
    }
}

/// The kind a status code stands for when a peer sent no `lima-error-kind`.
pub fn kind_for_code(code: Code) -> ErrorKind {
    match code {
        Code::InvalidArgument => ErrorKind::InvalidConfig,
        Code::Unimplemented => ErrorKind::Unsupported,
        Code::NotFound => ErrorKind::NotFound,
        Code::AlreadyExists => ErrorKind::AlreadyExists,
        Code::FailedPrecondition => ErrorKind::FailedPrecondition,
        Code::Unavailable => ErrorKind::Unavailable,
        Code::DeadlineExceeded => ErrorKind::Timeout,
        Code::Cancelled => ErrorKind::Cancelled,
        _ => ErrorKind::Internal,
    }
}

pub fn error_to_status(err: DriverError) -> tonic::Status {
    let mut status = tonic::Status::new(code_for_kind(err.kind), err.message);
    if let Ok(v) = err.kind.as_str().parse() {
        status.metadata_mut().insert(ERROR_KIND_METADATA, v);
    }
    status
}

/// A status the driver sent on purpose (it carries `lima-error-kind`), as the driver's error.
/// `None` for a status without it: a transport failure or a peer that is not our server.
pub fn status_to_driver_error(status: &tonic::Status) -> Option<DriverError> {
    let kind = status
        .metadata()
        .get(ERROR_KIND_METADATA)
        .and_then(|v| v.to_str().ok())
        .and_then(ErrorKind::parse)?;
    Some(DriverError::new(kind, status.message()))
}

pub fn error_to_pb(err: DriverError) -> pb::DriverError {
    pb::DriverError {
        kind: err.kind.as_str().to_string(),
        message: err.message,
    }
}

pub fn error_from_pb(err: pb::DriverError) -> DriverError {
    let kind = ErrorKind::parse(&err.kind).unwrap_or(ErrorKind::Internal);
    DriverError::new(kind, err.message)
}

pub fn features_to_pb(f: &Features) -> pb::Features {
    pb::Features {
        can_run_gui: f.can_run_gui,
        dynamic_ssh_address: f.dynamic_ssh_address,
        static_ssh_port: f.static_ssh_port,
        skip_socket_forwarding: f.skip_socket_forwarding,
        no_cloud_init: f.no_cloud_init,
        rosetta_enabled: f.rosetta_enabled,
        rosetta_binfmt: f.rosetta_binfmt,
        snapshots: f.snapshots,
    }
}

pub fn features_from_pb(f: pb::Features) -> Features {
    Features {
        can_run_gui: f.can_run_gui,
        dynamic_ssh_address: f.dynamic_ssh_address,
        static_ssh_port: f.static_ssh_port,
        skip_socket_forwarding: f.skip_socket_forwarding,
        no_cloud_init: f.no_cloud_init,
        rosetta_enabled: f.rosetta_enabled,
        rosetta_binfmt: f.rosetta_binfmt,
        snapshots: f.snapshots,
    }
}

/// The set flags by their camelCase names, as the handshake lists them.
pub fn feature_names(f: &Features) -> Vec<String> {
    [
        ("canRunGui", f.can_run_gui),
        ("dynamicSshAddress", f.dynamic_ssh_address),
        ("staticSshPort", f.static_ssh_port),
        ("skipSocketForwarding", f.skip_socket_forwarding),
        ("noCloudInit", f.no_cloud_init),
        ("rosettaEnabled", f.rosetta_enabled),
        ("rosettaBinfmt", f.rosetta_binfmt),
        ("snapshots", f.snapshots),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .map(|(name, _)| name.to_string())
    .collect()
}

pub fn info_to_pb(info: Info) -> pb::Info {
    pb::Info {
        name: info.name,
        version: info.version,
        vm_type: info.vm_type,
        image_formats: info.image_formats,
        features: Some(features_to_pb(&info.features)),
        instance_dir: info
            .instance_dir
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        vsock_port: info.vsock_port,
        virtio_port: info.virtio_port,
        mac_address: info.mac_address,
        log_files: info.log_files,
    }
}

pub fn info_from_pb(info: pb::Info) -> Info {
    Info {
        name: info.name,
        version: info.version,
        vm_type: info.vm_type,
        image_formats: info.image_formats,
        features: info.features.map(features_from_pb).unwrap_or_default(),
        instance_dir: (!info.instance_dir.is_empty()).then(|| PathBuf::from(info.instance_dir)),
        vsock_port: info.vsock_port,
        virtio_port: info.virtio_port,
        mac_address: info.mac_address,
        log_files: info.log_files,
    }
}

pub fn status_to_str(s: Status) -> &'static str {
    match s {
        Status::Unknown => "",
        Status::Uninitialized => "Uninitialized",
        Status::Installing => "Installing",
        Status::Broken => "Broken",
        Status::Stopped => "Stopped",
        Status::Running => "Running",
    }
}

pub fn status_from_str(s: &str) -> Option<Status> {
    [
        Status::Unknown,
        Status::Uninitialized,
        Status::Installing,
        Status::Broken,
        Status::Stopped,
        Status::Running,
    ]
    .into_iter()
    .find(|st| status_to_str(*st) == s)
}

/// The host of a config call as it travels: its OS and arch only.
pub fn host_to_pb(host: &HostFacts) -> pb::HostInfo {
    pb::HostInfo {
        os: host.os.to_string(),
        arch: host.arch.to_string(),
    }
}

/// The driver side's host of a config call. Only OS and arch travel; the other facts are
/// those of this machine when the OS and arch are its own (an external driver runs on the
/// client's machine, as its user, so they are the facts the client has), and empty when the
/// client asks as if on another host, as [`HostFacts::pretend`] is in-process. No host in the
/// request means this machine.
pub fn host_from_pb(host: Option<&pb::HostInfo>) -> Result<HostFacts, DriverError> {
    let Some(h) = host else {
        return Ok(limadefaults::detect_host());
    };
    let bad = |e: &dyn std::fmt::Display| DriverError::internal(format!("the request's host: {e}"));
    let os = h.os.parse().map_err(|e| bad(&e))?;
    let arch = h.arch.parse().map_err(|e| bad(&e))?;
    Ok(host_for(os, arch))
}

/// A host of `os` and `arch`: this machine's facts when they are its own, else
/// [`HostFacts::pretend`] (what a driver server makes of a request's host).
pub fn host_for(os: Os, arch: Arch) -> HostFacts {
    let pretend = HostFacts::pretend(os, arch);
    if pretend.is_this_machine() {
        limadefaults::detect_host()
    } else {
        pretend
    }
}

/// Configs and instances travel as JSON: our own wire format, and several times cheaper to
/// encode and decode than YAML (the limatype types serialize the same through either).
pub fn to_json<T: serde::Serialize>(what: &str, value: &T) -> Result<Vec<u8>, DriverError> {
    serde_json::to_vec(value)
        .map_err(|e| DriverError::internal(format!("cannot encode the {what} as JSON: {e}")))
}

pub fn from_json<T: serde::de::DeserializeOwned>(
    what: &str,
    bytes: &[u8],
) -> Result<T, DriverError> {
    serde_json::from_slice(bytes)
        .map_err(|e| DriverError::invalid_config(format!("cannot decode the {what} JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_survives_a_status() {
        for kind in ErrorKind::ALL {
            let st = error_to_status(DriverError::new(kind, format!("msg ü {kind}")));
            assert_eq!(kind_for_code(st.code()), kind, "code mapping of {kind}");
            let back = status_to_driver_error(&st).expect("kind metadata");
            assert_eq!(back, DriverError::new(kind, format!("msg ü {kind}")));
        }
    }

    #[test]
    fn a_status_without_kind_is_not_a_driver_error() {
        assert!(status_to_driver_error(&tonic::Status::unavailable("broken pipe")).is_none());
    }

    #[test]
    fn info_round_trips() {
        let info = Info {
            name: "x".into(),
            version: "1.2.3".into(),
            vm_type: "x".into(),
            image_formats: vec!["raw".into(), "qcow2".into()],
            features: Features {
                snapshots: true,
                no_cloud_init: true,
                ..Default::default()
            },
            instance_dir: Some("/tmp/i".into()),
            vsock_port: 2222,
            virtio_port: "p".into(),
            mac_address: "52:55:55:01:02:03".into(),
            log_files: vec!["x.stderr.log".into()],
        };
        assert_eq!(info_from_pb(info_to_pb(info.clone())), info);
        assert_eq!(feature_names(&info.features), ["noCloudInit", "snapshots"]);
    }

    #[test]
    fn every_template_survives_the_json_wire_format() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let config = driver::LimaYaml::from_yaml(&text).unwrap();
            let back: driver::LimaYaml =
                from_json("lima.yaml", &to_json("lima.yaml", &config).unwrap()).unwrap();
            assert_eq!(back, config, "{}", path.display());
            seen += 1;
        }
        assert!(seen > 10, "only {seen} templates in {}", dir.display());
    }

    #[test]
    fn driver_sections_and_odd_scalars_survive_json() {
        let config = driver::LimaYaml::from_yaml(
            "cpus: 4\nmemory: 4GiB\nvmOpts:\n  qemu: {minimumVersion: \"9.0\"}\n  \
             mydriver: {flag: true, n: 3, x: 1.5, list: [a, {b: null}], \"k\": ~}\n\
             os: Linux\nenv: {A: \"1\"}\n",
        )
        .unwrap();
        let back: driver::LimaYaml =
            from_json("lima.yaml", &to_json("lima.yaml", &config).unwrap()).unwrap();
        assert_eq!(back, config);
        let err = from_json::<driver::LimaYaml>("lima.yaml", b"{\"cpus\": \"many\"}").unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidConfig);
        assert!(err.message.contains("lima.yaml JSON"), "{}", err.message);
    }

    #[test]
    fn hosts_travel_as_os_and_arch() {
        let mac = HostFacts::pretend(Os::Darwin, Arch::Aarch64);
        let wire = host_to_pb(&mac);
        assert_eq!(
            (wire.os.as_str(), wire.arch.as_str()),
            ("Darwin", "aarch64")
        );
        let other = if Os::host() == Os::Windows {
            HostFacts::pretend(Os::FreeBSD, Arch::host())
        } else {
            HostFacts::pretend(Os::Windows, Arch::host())
        };
        assert_eq!(host_from_pb(Some(&host_to_pb(&other))).unwrap(), other);
        // This machine: its own facts, as the client detects them.
        let here = limadefaults::detect_host();
        let got = host_from_pb(Some(&host_to_pb(&here))).unwrap();
        assert!(got.is_this_machine());
        assert_eq!((got.uid, &got.lima_home), (here.uid, &here.lima_home));
        assert!(host_from_pb(None).unwrap().is_this_machine());
        let e = host_from_pb(Some(&pb::HostInfo {
            os: "Plan9".into(),
            arch: "x86_64".into(),
        }))
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Internal);
        assert!(e.message.contains("\"Plan9\" is not an OS"), "{e}");
    }

    #[test]
    fn status_spelling_round_trips() {
        for s in [
            "",
            "Uninitialized",
            "Installing",
            "Broken",
            "Stopped",
            "Running",
        ] {
            assert_eq!(status_to_str(status_from_str(s).unwrap()), s);
        }
        assert_eq!(status_from_str("Sleeping"), None);
    }
}
