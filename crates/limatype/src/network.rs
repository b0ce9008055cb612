//! The user-mode (slirp) network every driver gives the guest, as upstream's `usernet`
//! defaults: the subnet, the guest's address, the gateway (the host as the guest sees it,
//! named `host.lima.internal`) and the DNS forwarder.

/// The user-mode subnet.
pub const SLIRP_NETWORK: &str = "192.168.5.0/24";
/// The guest's address (the first DHCP lease).
pub const SLIRP_GUEST_IP: &str = "192.168.5.15";
/// The host's loopback as the guest reaches it (`host.lima.internal`).
pub const SLIRP_GATEWAY: &str = "192.168.5.2";
/// The forwarder of DNS queries to the host's resolvers.
pub const SLIRP_DNS: &str = "192.168.5.3";
/// The name of the host in the guest.
pub const HOST_NAME_IN_GUEST: &str = "host.lima.internal";
