//! Which host address a guest port is forwarded to: upstream Lima's `portForwards` rules, in
//! their order, with the SSH port never forwarded and upstream's catch-all rule last (guest
//! 127.0.0.1, all ports, to the host's 127.0.0.1). Pure functions of the filled rules.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

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
        if rule.host_socket.as_deref().is_some_and(|s| !s.is_empty()) {
            // Port to unix socket forwarding is not done here yet.
            continue;
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
