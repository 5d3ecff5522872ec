//! The `200 CONNECTED` head (docs/protocol.md, "The CONNECT reply"): what a
//! session's policy, resolved by the caller from the configuration and the
//! user's files, becomes on the wire, header by header, in the exact case
//! the clients need.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};

use crate::connect::{DtlsChoice, DtlsMode, Ipv6Form};
use crate::http::Response;

/// The DTLS channel a reply offers.
#[derive(Clone, Copy, Debug)]
pub struct DtlsOffer<'a> {
    pub choice: DtlsChoice,
    /// The App-ID (PSK) or Session-ID (legacy), hex: what the client puts
    /// in its ClientHello so the server finds the session.
    pub id: &'a str,
    pub port: u16,
}

/// Everything a CONNECT reply says. Lists are the ones that apply to this
/// session (a user's routes and DNS servers replace the global ones); the
/// rules of what the clients are told live in [`ConnectReply::render`].
#[derive(Clone, Debug)]
pub struct ConnectReply<'a> {
    /// `X-CSTP-Server-Name`.
    pub server_name: &'a str,
    pub user: &'a str,
    pub group: Option<&'a str>,
    pub lease: Ipv4Addr,
    pub netmask: Ipv4Addr,
    /// The IPv6 address and how the client asked for it.
    pub lease6: Option<(Ipv6Addr, Ipv6Form)>,
    /// The IPv6 network the address is in.
    pub net6: Option<Ipv6Net>,
    pub dns: &'a [IpAddr],
    pub nbns: &'a [IpAddr],
    /// IPv4 routes through the tunnel; none, or `0.0.0.0/0` among them, is
    /// a full tunnel.
    pub routes: &'a [Ipv4Net],
    pub no_routes: &'a [Ipv4Net],
    pub routes6: &'a [Ipv6Net],
    pub no_routes6: &'a [Ipv6Net],
    pub split_dns: &'a [String],
    pub default_domain: Option<&'a str>,
    /// The accepted hostname; empty for none.
    pub hostname: &'a str,
    pub dtls: Option<DtlsOffer<'a>>,
    pub dpd: Duration,
    pub keepalive: u64,
    pub idle_timeout: Option<Duration>,
    pub session_timeout: Option<Duration>,
    /// Time left of a session that already ran (a reconnect).
    pub session_left: Option<Duration>,
    /// The login banner; empty for none.
    pub banner: &'a str,
    pub tunnel_all_dns: bool,
    pub client_bypass_protocol: bool,
    /// `rekey-method` and `rekey-time` (seconds), when rekeying is on.
    pub rekey: Option<(&'a str, u64)>,
    pub base_mtu: u16,
    pub mtu: u16,
    /// The operator's `Name: value` lines on every answer.
    pub http_headers: &'a [String],
    /// ocserv's `proxy-url` (`%{U}` and `%{G}` are filled in); empty for none.
    pub proxy_url: &'a str,
    /// ocserv's `custom-header` lines, `Name: value` (filled in likewise).
    pub custom_headers: &'a [String],
}

/// Whether `routes` send everything through the tunnel: none, or a
/// default route among them.
pub fn is_full_tunnel(routes: &[Ipv4Net]) -> bool {
    routes.is_empty() || routes.iter().any(|r| r.prefix_len() == 0)
}

/// [`is_full_tunnel`] for IPv6.
pub fn is_full_tunnel_v6(routes: &[Ipv6Net]) -> bool {
    routes.is_empty() || routes.iter().any(|r| r.prefix_len() == 0)
}

impl ConnectReply<'_> {
    /// The reply head, ending with the blank line (no body).
    pub fn render(&self) -> Vec<u8> {
        let dpd = self.dpd.as_secs();
        let mut r = Response::new(200, "CONNECTED")
            .header("X-CSTP-Version", 1)
            .header("X-CSTP-Server-Name", self.server_name)
            .header("X-CSTP-DPD", dpd)
            .header("X-CSTP-Address", self.lease)
            .header("X-CSTP-Netmask", self.netmask);
        r = match (self.lease6, self.net6) {
            (Some((a6, Ipv6Form::Full)), Some(net)) => {
                r.header("X-CSTP-Address-IP6", format!("{a6}/{}", net.prefix_len()))
            }
            // Older clients: a second Address/Netmask pair.
            (Some((a6, Ipv6Form::Legacy)), Some(net)) => r.header("X-CSTP-Address", a6).header(
                "X-CSTP-Netmask",
                format!("{}/{}", net.network(), net.prefix_len()),
            ),
            _ => r,
        };
        // IPv6 routes, DNS and NBNS servers go to full-capability clients
        // with an IPv6 address only (as ocserv).
        let full6 = matches!(self.lease6, Some((_, Ipv6Form::Full)));
        let usable = |a: &&IpAddr| a.is_ipv4() || full6;
        for d in self.dns.iter().filter(usable) {
            r = r.header("X-CSTP-DNS", d);
        }
        let full_tunnel = is_full_tunnel(self.routes);
        if !full_tunnel {
            for route in self.routes {
                r = r.header(
                    "X-CSTP-Split-Include",
                    format!("{}/{}", route.network(), route.netmask()),
                );
            }
        }
        for route in self.no_routes {
            r = r.header(
                "X-CSTP-Split-Exclude",
                format!("{}/{}", route.network(), route.netmask()),
            );
        }
        if full6 {
            if !is_full_tunnel_v6(self.routes6) {
                for route in self.routes6 {
                    r = r.header("X-CSTP-Split-Include-IP6", route);
                }
            }
            for route in self.no_routes6 {
                r = r.header("X-CSTP-Split-Exclude-IP6", route);
            }
        }
        for domain in self.split_dns {
            r = r.header("X-CSTP-Split-DNS", domain);
        }
        if let Some(d) = self.default_domain {
            r = r.header("X-CSTP-Default-Domain", d);
        }
        if !self.hostname.is_empty() {
            r = r.header("X-CSTP-Hostname", self.hostname);
        }
        if let Some(offer) = self.dtls {
            r = match offer.choice.mode {
                DtlsMode::Psk => r.header("X-DTLS-App-ID", offer.id),
                DtlsMode::Legacy { .. } => r
                    .header("X-DTLS-Session-ID", offer.id)
                    .header("X-DTLS-MTU", self.mtu),
            };
            r = r
                .header("X-DTLS-Port", offer.port)
                .header("X-DTLS-DPD", dpd)
                .header("X-DTLS-Keepalive", self.keepalive)
                .header(offer.choice.header, offer.choice.value);
        }
        let secs =
            |d: Option<Duration>| d.map_or_else(|| "none".to_owned(), |d| d.as_secs().to_string());
        r = r
            .header("X-CSTP-Idle-Timeout", secs(self.idle_timeout))
            .header("X-CSTP-Session-Timeout", secs(self.session_timeout));
        if self.session_left.is_some() {
            r = r.header("X-CSTP-Session-Timeout-Remaining", secs(self.session_left));
        }
        for n in self.nbns.iter().filter(usable) {
            r = r.header("X-CSTP-NBNS", n);
        }
        if !self.banner.is_empty() {
            // One header line: line breaks become spaces.
            let line: String = self
                .banner
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            r = r.header("X-CSTP-Banner", line);
        }
        let (rekey_method, rekey_time) = self.rekey.unwrap_or(("none", 0));
        r = r
            // A full tunnel sends all DNS through it anyway (ocserv says so too).
            .header("X-CSTP-Tunnel-All-DNS", full_tunnel || self.tunnel_all_dns)
            .header("X-CSTP-Client-Bypass-Protocol", self.client_bypass_protocol)
            .header("X-CSTP-Keepalive", self.keepalive)
            .header("X-CSTP-Disconnected-Timeout", "none")
            .header("X-CSTP-Keep", "true")
            .header("X-CSTP-TCP-Keepalive", "true")
            .header("X-CSTP-License", "accept")
            .header("X-CSTP-Rekey-Method", rekey_method)
            .header("X-CSTP-Base-MTU", self.base_mtu)
            .header("X-CSTP-MTU", self.mtu);
        if rekey_time > 0 {
            r = r.header("X-CSTP-Rekey-Time", rekey_time);
        }
        for (name, value) in self.http_headers.iter().filter_map(|h| h.split_once(':')) {
            r = r.header(name.trim(), value.trim());
        }
        if !self.proxy_url.is_empty() {
            r = r.header("X-CSTP-MSIE-Proxy-Pac-URL", self.fill(self.proxy_url));
        }
        for h in self.custom_headers {
            if let Some((name, value)) = self.fill(h).split_once(':') {
                r = r.header(name.trim(), value.trim());
            }
        }
        r.finish()
    }

    /// `%{U}` and `%{G}` in the operator's values; the names lose any
    /// control character on the way (a certificate's name could carry one).
    fn fill(&self, v: &str) -> String {
        let clean = |s: &str| s.chars().filter(|c| !c.is_control()).collect::<String>();
        v.replace("%{U}", &clean(self.user))
            .replace("%{G}", &clean(self.group.unwrap_or("")))
    }
}

#[cfg(test)]
mod tests;
