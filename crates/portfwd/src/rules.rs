//! Which host address a guest port is forwarded to: upstream Lima's `portForwards` rules, in
//! their order, with the SSH port never forwarded and upstream's catch-all rule last (guest
//! 127.0.0.1, all ports, to the host's 127.0.0.1). Pure functions of the filled rules.
//!
//! Two kinds of forwards: dynamic ones ([`decide`]: a port the guest agent reports, forwarded
//! while it listens) and the ones set up when the host agent starts ([`static_forwards`]:
//! `static: true` rules, and every rule with a `guestSocket` or `hostSocket`, whose sockets
//! the guest agent does not report).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use gamux::Target;

use limatype::PortForward;

/// A listening socket in the guest, as the guest agent reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GuestPort {
    pub tcp: bool,
    pub ip: IpAddr,
    pub port: u16,
}

/// What to do with a guest port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Listen on `host` and tunnel each connection to `guest` (inside the guest).
    Forward { host: SocketAddr, guest: SocketAddr },
    /// A rule says `ignore: true` (or it is the guest's SSH port).
    Ignore,
    /// A static or socket rule covers the port: [`static_forwards`] set it up already.
    Static,
}

/// Most ports one static rule sets up (a static rule over a wide range would otherwise hold
/// thousands of host ports).
pub const MAX_STATIC_PORTS_PER_RULE: usize = 1024;

/// A forward set up when the host agent starts, for as long as it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaticForward {
    /// Listen on a host TCP or UDP address and forward to a guest address.
    Port {
        /// TCP (else UDP).
        tcp: bool,
        /// The host address to listen on.
        host: SocketAddr,
        /// The guest address to connect or send to.
        guest: SocketAddr,
    },
    /// Listen on a host unix socket and connect each connection to `guest` (a unix socket or
    /// a TCP address in the guest).
    Socket {
        /// The host socket's path.
        host: PathBuf,
        /// Where in the guest.
        guest: Target,
    },
    /// `reverse: true`: listen on the guest socket and connect to the host socket (done over
    /// SSH by the host agent, as upstream does).
    Reverse {
        /// The host socket connections go to.
        host: PathBuf,
        /// The guest socket to listen on.
        guest: String,
    },
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// The forwards to set up at start, in rule order (ignore rules have none). Also returns the
/// rules it skipped, with the reason (to report, not to fail on: validation ran already).
pub fn static_forwards(rules: &[PortForward]) -> (Vec<StaticForward>, Vec<String>) {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        if rule.ignore == Some(true) {
            continue;
        }
        let guest_socket = non_empty(&rule.guest_socket);
        let host_socket = non_empty(&rule.host_socket);
        let [lo, hi] = rule
            .guest_port_range
            .or(rule.guest_port.map(|p| [p, p]))
            .unwrap_or([1, 65535]);
        let guest_ip = guest_target(parse_ip(
            rule.guest_ip.as_deref(),
            IpAddr::V4(Ipv4Addr::LOCALHOST),
        ));
        match (guest_socket, host_socket) {
            (Some(g), Some(h)) if rule.reverse == Some(true) => out.push(StaticForward::Reverse {
                host: PathBuf::from(h),
                guest: g.to_string(),
            }),
            (Some(g), Some(h)) => out.push(StaticForward::Socket {
                host: PathBuf::from(h),
                guest: Target::Unix(g.to_string()),
            }),
            (None, Some(h)) => match u16::try_from(lo) {
                Ok(port) if lo == hi && port > 0 => out.push(StaticForward::Socket {
                    host: PathBuf::from(h),
                    guest: Target::Tcp(SocketAddr::new(guest_ip, port)),
                }),
                _ => skipped.push(format!(
                    "portForwards[{i}]: a hostSocket needs one guestPort, not {lo}-{hi}"
                )),
            },
            (Some(_), None) => skipped.push(format!(
                "portForwards[{i}]: guestSocket without hostSocket is not forwarded"
            )),
            (None, None) if rule.static_ == Some(true) => {
                let count = usize::try_from(hi - lo + 1).unwrap_or(0);
                if count == 0 || count > MAX_STATIC_PORTS_PER_RULE {
                    skipped.push(format!(
                        "portForwards[{i}]: a static rule forwards 1 to {MAX_STATIC_PORTS_PER_RULE} ports, not {lo}-{hi}"
                    ));
                    continue;
                }
                let [host_lo, _] = rule.host_port_range.unwrap_or([lo, hi]);
                let host_ip = parse_ip(rule.host_ip.as_deref(), IpAddr::V4(Ipv4Addr::LOCALHOST));
                for port in lo..=hi {
                    let (Ok(gp), Ok(hp)) =
                        (u16::try_from(port), u16::try_from(port - lo + host_lo))
                    else {
                        continue;
                    };
                    for tcp in [true, false] {
                        if proto_matches(rule, tcp) {
                            out.push(StaticForward::Port {
                                tcp,
                                host: SocketAddr::new(host_ip, hp),
                                guest: SocketAddr::new(guest_ip, gp),
                            });
                        }
                    }
                }
            }
            (None, None) => {}
        }
    }
    (out, skipped)
}

/// The rules in effect: the config's (filled) rules, with an ignore rule for the guest's SSH
/// port first and upstream's default rule last.
pub fn effective_rules(config_rules: &[PortForward], ssh_guest_port: u16) -> Vec<PortForward> {
    let loopback = Some("127.0.0.1".to_string());
    let mut rules = vec![PortForward {
        // 0.0.0.0: the guest's sshd on any address is never forwarded.
        guest_ip: Some("0.0.0.0".into()),
        guest_port_range: Some([i64::from(ssh_guest_port), i64::from(ssh_guest_port)]),
        guest_ip_must_be_zero: Some(false),
        ignore: Some(true),
        proto: Some("any".into()),
        ..Default::default()
    }];
    rules.extend(config_rules.iter().cloned());
    rules.push(PortForward {
        guest_ip: loopback.clone(),
        guest_ip_must_be_zero: Some(false),
        guest_port_range: Some([1, 65535]),
        host_ip: loopback,
        host_port_range: Some([1, 65535]),
        proto: Some("any".into()),
        ..Default::default()
    });
    rules
}

fn proto_matches(rule: &PortForward, tcp: bool) -> bool {
    match rule.proto.as_deref().unwrap_or("any") {
        "tcp" => tcp,
        "udp" => !tcp,
        _ => true,
    }
}

fn parse_ip(s: Option<&str>, default: IpAddr) -> IpAddr {
    s.and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// Whether a rule's `guestIP` covers a socket bound to `ip`, as upstream decides: a socket on
/// 0.0.0.0 or :: listens on every address, so any rule matches it (unless the rule asks for
/// the unspecified address only); 127.0.0.1 also covers ::1; a rule for 0.0.0.0 covers every
/// address unless `guestIPMustBeZero`.
fn ip_matches(rule: &PortForward, ip: IpAddr) -> bool {
    let rule_ip = parse_ip(rule.guest_ip.as_deref(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    let must_be_zero = rule.guest_ip_must_be_zero.unwrap_or(false);
    if ip.is_unspecified() {
        return true;
    }
    if must_be_zero {
        return false;
    }
    ip == rule_ip
        || (ip == IpAddr::V6(Ipv6Addr::LOCALHOST) && rule_ip == IpAddr::V4(Ipv4Addr::LOCALHOST))
        || rule_ip.is_unspecified()
}

/// The decision for one guest port: the first rule that matches it (protocol, port range,
/// address) decides; a socket-forwarding rule (`guestSocket`) never matches a port.
pub fn decide(rules: &[PortForward], g: GuestPort) -> Option<Decision> {
    for rule in rules {
        if rule.guest_socket.as_deref().is_some_and(|s| !s.is_empty())
            || !proto_matches(rule, g.tcp)
        {
            continue;
        }
        let [lo, hi] = rule.guest_port_range.unwrap_or([1, 65535]);
        if i64::from(g.port) < lo || i64::from(g.port) > hi || !ip_matches(rule, g.ip) {
            continue;
        }
        if rule.ignore == Some(true) {
            // An ignore rule for one address does not hide a socket on all addresses.
            let rule_ip = parse_ip(rule.guest_ip.as_deref(), IpAddr::V4(Ipv4Addr::LOCALHOST));
            if g.ip.is_unspecified() && !rule_ip.is_unspecified() {
                continue;
            }
            return Some(Decision::Ignore);
        }
        if rule.static_ == Some(true) || non_empty(&rule.host_socket).is_some() {
            // Set up at start by `static_forwards`; the guest port is served there already.
            return Some(Decision::Static);
        }
        let [host_lo, _] = rule.host_port_range.unwrap_or([lo, hi]);
        let host_port = u16::try_from(i64::from(g.port) - lo + host_lo).ok()?;
        let host_ip = parse_ip(rule.host_ip.as_deref(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        return Some(Decision::Forward {
            host: SocketAddr::new(host_ip, host_port),
            guest: SocketAddr::new(guest_target(g.ip), g.port),
        });
    }
    None
}

/// Where the guest agent connects for a socket bound to `ip`: the address itself, or the
/// loopback of its family for a socket on all addresses.
fn guest_target(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(ip: &str, port: u16) -> GuestPort {
        GuestPort {
            tcp: true,
            ip: ip.parse().unwrap(),
            port,
        }
    }

    fn fwd(host: &str, guest: &str) -> Option<Decision> {
        Some(Decision::Forward {
            host: host.parse().unwrap(),
            guest: guest.parse().unwrap(),
        })
    }

    #[test]
    fn default_rule_forwards_loopback_and_any_address_to_host_loopback() {
        let rules = effective_rules(&[], 22);
        assert_eq!(
            decide(&rules, port("127.0.0.1", 8080)),
            fwd("127.0.0.1:8080", "127.0.0.1:8080")
        );
        assert_eq!(
            decide(&rules, port("0.0.0.0", 8080)),
            fwd("127.0.0.1:8080", "127.0.0.1:8080")
        );
        assert_eq!(
            decide(&rules, port("::", 9000)),
            fwd("127.0.0.1:9000", "[::1]:9000")
        );
        assert_eq!(
            decide(&rules, port("::1", 9000)),
            fwd("127.0.0.1:9000", "[::1]:9000")
        );
        // Another guest address is not covered by the default rule.
        assert_eq!(decide(&rules, port("10.0.2.15", 8080)), None);
        // SSH is never forwarded.
        assert_eq!(decide(&rules, port("0.0.0.0", 22)), Some(Decision::Ignore));
    }

    #[test]
    fn config_rules_remap_and_ignore_in_order() {
        let remap = PortForward {
            guest_ip: Some("127.0.0.1".into()),
            guest_ip_must_be_zero: Some(false),
            guest_port_range: Some([8000, 8010]),
            host_ip: Some("127.0.0.1".into()),
            host_port_range: Some([18000, 18010]),
            proto: Some("tcp".into()),
            ..Default::default()
        };
        let ignore = PortForward {
            guest_ip: Some("0.0.0.0".into()),
            guest_ip_must_be_zero: Some(false),
            guest_port_range: Some([9000, 9000]),
            ignore: Some(true),
            proto: Some("any".into()),
            ..Default::default()
        };
        let rules = effective_rules(&[remap, ignore], 22);
        assert_eq!(
            decide(&rules, port("127.0.0.1", 8005)),
            fwd("127.0.0.1:18005", "127.0.0.1:8005")
        );
        assert_eq!(
            decide(&rules, port("127.0.0.1", 9000)),
            Some(Decision::Ignore)
        );
        assert_eq!(
            decide(&rules, port("0.0.0.0", 9000)),
            Some(Decision::Ignore)
        );
        // Outside the remapped range the default rule applies.
        assert_eq!(
            decide(&rules, port("127.0.0.1", 8011)),
            fwd("127.0.0.1:8011", "127.0.0.1:8011")
        );
    }

    #[test]
    fn guest_ip_must_be_zero_only_matches_any_address() {
        let zero = PortForward {
            guest_ip: Some("0.0.0.0".into()),
            guest_ip_must_be_zero: Some(true),
            guest_port_range: Some([7000, 7000]),
            host_ip: Some("127.0.0.1".into()),
            host_port_range: Some([17000, 17000]),
            proto: Some("any".into()),
            ..Default::default()
        };
        let rules = effective_rules(&[zero], 22);
        assert_eq!(
            decide(&rules, port("0.0.0.0", 7000)),
            fwd("127.0.0.1:17000", "127.0.0.1:7000")
        );
        assert_eq!(
            decide(&rules, port("127.0.0.1", 7000)),
            fwd("127.0.0.1:7000", "127.0.0.1:7000")
        );
    }

    #[test]
    fn udp_follows_proto() {
        let tcp_only = PortForward {
            guest_ip: Some("127.0.0.1".into()),
            guest_ip_must_be_zero: Some(false),
            guest_port_range: Some([53, 53]),
            host_ip: Some("127.0.0.1".into()),
            host_port_range: Some([5353, 5353]),
            proto: Some("tcp".into()),
            ..Default::default()
        };
        let rules = effective_rules(&[tcp_only], 22);
        let udp = GuestPort {
            tcp: false,
            ..port("127.0.0.1", 53)
        };
        assert_eq!(decide(&rules, udp), fwd("127.0.0.1:53", "127.0.0.1:53"));
        assert_eq!(
            decide(&rules, port("127.0.0.1", 53)),
            fwd("127.0.0.1:5353", "127.0.0.1:53")
        );
    }
}
