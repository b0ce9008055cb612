//! The guest's view of the host's network settings: the proxy variables of
//! `propagateProxyEnv` (upstream's `cidata.setupEnv`, a loopback proxy rewritten to the
//! host's address as the guest sees it) and the `/etc/hosts` lines for `host.lima.internal`
//! and, when the host agent's DNS server (crate `hostdns`) is off, `hostResolver.hosts`; see
//! docs/network-ssh-containerd.md.

use std::collections::BTreeMap;
use std::net::{IpAddr, ToSocketAddrs};

use limatype::network::HOST_NAME_IN_GUEST;

/// The proxy variables, lower-case first (upstream's order and precedence).
pub const PROXY_VARS: [&str; 4] = ["ftp_proxy", "http_proxy", "https_proxy", "no_proxy"];

/// The proxy variables of a process environment (both cases), for [`guest_env`].
pub fn host_proxy_env(
    vars: impl IntoIterator<Item = (String, String)>,
) -> BTreeMap<String, String> {
    vars.into_iter()
        .filter(|(k, _)| {
            PROXY_VARS
                .iter()
                .any(|p| k == p || *k == p.to_ascii_uppercase())
        })
        .collect()
}

/// Whether `host` names this machine's loopback: an address, `localhost`, or a name that
/// resolves to one (upstream looks every proxy host up the same way).
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    if bare.is_empty() {
        return false;
    }
    if bare.eq_ignore_ascii_case("localhost") || bare.to_ascii_lowercase().ends_with(".localhost") {
        return true;
    }
    (bare, 0)
        .to_socket_addrs()
        .map(|mut a| a.any(|a| a.ip().is_loopback()))
        .unwrap_or(false)
}

/// `value` with a loopback host replaced by `gateway` (port, scheme, user and path kept).
/// Only `[scheme://][user@]host[:port][/path]` is looked at: a value that does not parse
/// that way comes back unchanged. (Hand-split rather than through the `url` crate, which
/// would also normalise the value, adding a `/` upstream does not.)
pub fn rewrite_loopback(value: &str, gateway: &str, is_loopback: impl Fn(&str) -> bool) -> String {
    let (scheme, rest) = match value.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, value),
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (host, port) = if let Some(end) = hostport.strip_prefix('[').and_then(|h| h.find(']')) {
        let (h, p) = hostport.split_at(end + 2);
        (h, p.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (hostport, None),
        }
    };
    // Without a scheme Go's url.Parse reads `localhost:3128` as scheme `localhost`: no host,
    // so upstream rewrites nothing there either.
    if scheme.is_none() || host.is_empty() || !is_loopback(host) {
        return value.to_string();
    }
    let mut out = format!("{}://", scheme.unwrap_or_default());
    if let Some(u) = userinfo {
        out.push_str(u);
        out.push('@');
    }
    out.push_str(gateway);
    if let Some(p) = port.filter(|p| !p.is_empty()) {
        out.push(':');
        out.push_str(p);
    }
    out.push_str(path);
    out
}

/// The guest's environment (upstream's `setupEnv`): `env` from lima.yaml, then (with
/// `propagateProxyEnv`) the host's proxy variables over it, an empty value dropped, a
/// loopback proxy pointed at `gateway`, and each variable's upper-case form made equal to
/// its lower-case one (the lower-case value wins when both are set).
pub fn guest_env(
    config_env: &BTreeMap<String, String>,
    host_proxy: &BTreeMap<String, String>,
    propagate: bool,
    gateway: &str,
    is_loopback: impl Fn(&str) -> bool,
) -> BTreeMap<String, String> {
    let mut env = config_env.clone();
    let all: Vec<String> = PROXY_VARS
        .iter()
        .map(|v| v.to_string())
        .chain(PROXY_VARS.iter().map(|v| v.to_ascii_uppercase()))
        .collect();
    if propagate {
        for name in &all {
            if let Some(value) = host_proxy.get(name) {
                if env.get(name).is_some_and(|old| old != value) {
                    tracing::info!("Overriding {name:?} with {value:?} from limactl's environment");
                }
                env.insert(name.clone(), value.clone());
            }
        }
    }
    for name in &all {
        let Some(value) = env.get(name).cloned() else {
            continue;
        };
        if value.is_empty() {
            env.remove(name);
        } else if !name.eq_ignore_ascii_case("no_proxy") {
            let new = rewrite_loopback(&value, gateway, &is_loopback);
            if new != value {
                tracing::info!("Replacing {name:?} value {value:?} with {new:?}");
                env.insert(name.clone(), new);
            }
        }
    }
    for lower in PROXY_VARS {
        let upper = lower.to_ascii_uppercase();
        match (env.get(lower).cloned(), env.get(&upper).cloned()) {
            (Some(l), Some(u)) if l != u => {
                tracing::warn!("Changing {upper:?} value from {u:?} to {l:?} to match {lower:?}");
                env.insert(upper, l);
            }
            (Some(l), None) => {
                env.insert(upper, l);
            }
            (None, Some(u)) => {
                env.insert(lower.to_string(), u);
            }
            _ => {}
        }
    }
    env
}

/// The guest's `/etc/hosts` lines (`ADDRESS\tNAME`): `host.lima.internal` at `gateway`, then
/// each `hostResolver.hosts` entry. A value that is an address is used as it is; a name
/// (`host.lima.internal` or a host name) is resolved now, with `lookup`, and a loopback
/// answer is the gateway. A name that does not resolve is left out with a warning.
pub fn etc_hosts(
    hosts: &BTreeMap<String, String>,
    gateway: &str,
    lookup: impl Fn(&str) -> Vec<IpAddr>,
) -> Vec<String> {
    let mut lines = vec![format!("{gateway}\t{HOST_NAME_IN_GUEST}")];
    for (name, value) in hosts {
        let addr = if let Ok(ip) = value.parse::<IpAddr>() {
            Some(ip.to_string())
        } else if value.eq_ignore_ascii_case(HOST_NAME_IN_GUEST) {
            Some(gateway.to_string())
        } else {
            let ips = lookup(value);
            // IPv4 first: the guest's user-mode network has no IPv6 route to the host.
            let ip = ips
                .iter()
                .find(|i| i.is_ipv4())
                .or_else(|| ips.first())
                .copied();
            ip.map(|ip| {
                if ip.is_loopback() {
                    gateway.to_string()
                } else {
                    ip.to_string()
                }
            })
        };
        match addr {
            Some(a) => lines.push(format!("{a}\t{name}")),
            None => {
                tracing::warn!("hostResolver.hosts.{name}: {value:?} does not resolve; left out")
            }
        }
    }
    lines
}

/// Looks a name up with the host's resolver (for [`etc_hosts`]).
pub fn lookup_host(name: &str) -> Vec<IpAddr> {
    (name, 0)
        .to_socket_addrs()
        .map(|a| a.map(|a| a.ip()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lo(h: &str) -> bool {
        h == "localhost" || h.starts_with("127.") || h == "[::1]" || h == "loop.example"
    }

    #[test]
    fn loopback_proxies_point_at_the_gateway() {
        let g = "192.168.5.2";
        for (value, want) in [
            ("http://localhost:3128", "http://192.168.5.2:3128"),
            ("http://127.0.0.1:3128/", "http://192.168.5.2:3128/"),
            (
                "http://u:p@localhost:8080/x?y",
                "http://u:p@192.168.5.2:8080/x?y",
            ),
            ("socks5://[::1]:1080", "socks5://192.168.5.2:1080"),
            ("http://loop.example", "http://192.168.5.2"),
            ("http://proxy.corp:3128", "http://proxy.corp:3128"),
            ("localhost:3128", "localhost:3128"),
            ("", ""),
        ] {
            assert_eq!(rewrite_loopback(value, g, lo), want, "{value}");
        }
        assert!(is_loopback_host("127.0.0.1"));
        assert!(is_loopback_host("[::1]"));
        assert!(is_loopback_host("localhost"));
        assert!(!is_loopback_host("10.0.0.1"));
    }

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn setup_env_as_upstream() {
        let host = host_proxy_env(map(&[
            ("http_proxy", "http://localhost:3128"),
            ("HTTPS_PROXY", "http://proxy.corp:443"),
            ("no_proxy", "localhost,.corp"),
            ("PATH", "/bin"),
        ]));
        assert!(!host.contains_key("PATH"));
        let config = map(&[
            ("FOO", "bar"),
            ("ftp_proxy", ""),
            ("http_proxy", "http://x:1"),
        ]);
        let env = guest_env(&config, &host, true, "192.168.5.2", lo);
        assert_eq!(
            env,
            map(&[
                ("FOO", "bar"),
                ("HTTPS_PROXY", "http://proxy.corp:443"),
                ("HTTP_PROXY", "http://192.168.5.2:3128"),
                ("NO_PROXY", "localhost,.corp"),
                ("http_proxy", "http://192.168.5.2:3128"),
                ("https_proxy", "http://proxy.corp:443"),
                ("no_proxy", "localhost,.corp"),
            ])
        );
        // Not propagated: only lima.yaml's env, still completed and rewritten.
        let env = guest_env(&config, &host, false, "192.168.5.2", lo);
        assert_eq!(
            env,
            map(&[
                ("FOO", "bar"),
                ("HTTP_PROXY", "http://x:1"),
                ("http_proxy", "http://x:1"),
            ])
        );
    }

    #[test]
    fn hosts_lines() {
        let hosts = map(&[
            ("a.test", "10.1.2.3"),
            ("b.test", "host.lima.internal"),
            ("c.test", "loop.example"),
            ("d.test", "nowhere.invalid"),
        ]);
        let lookup = |n: &str| match n {
            "loop.example" => vec!["127.0.0.1".parse().unwrap()],
            _ => vec![],
        };
        assert_eq!(
            etc_hosts(&hosts, "192.168.5.2", lookup),
            vec![
                "192.168.5.2\thost.lima.internal",
                "10.1.2.3\ta.test",
                "192.168.5.2\tb.test",
                "192.168.5.2\tc.test",
            ]
        );
    }
}
