use super::*;
use crate::connect::LegacySuite;

const NO_NETS: &[Ipv4Net] = &[];
const NO_NETS6: &[Ipv6Net] = &[];
const NO_ADDRS: &[IpAddr] = &[];
const NO_LINES: &[String] = &[];

/// An IPv4-only session with nothing optional.
fn plain() -> ConnectReply<'static> {
    ConnectReply {
        server_name: "ocserv-uring 0.1.0",
        user: "alice",
        group: None,
        lease: Ipv4Addr::new(192, 168, 1, 10),
        netmask: Ipv4Addr::new(255, 255, 255, 0),
        lease6: None,
        net6: None,
        dns: NO_ADDRS,
        nbns: NO_ADDRS,
        routes: NO_NETS,
        no_routes: NO_NETS,
        routes6: NO_NETS6,
        no_routes6: NO_NETS6,
        split_dns: NO_LINES,
        default_domain: None,
        hostname: "",
        dtls: None,
        dpd: Duration::from_secs(90),
        keepalive: 32400,
        idle_timeout: None,
        session_timeout: None,
        session_left: None,
        banner: "",
        tunnel_all_dns: false,
        client_bypass_protocol: false,
        rekey: None,
        base_mtu: 1500,
        mtu: 1434,
        http_headers: NO_LINES,
        proxy_url: "",
        custom_headers: NO_LINES,
    }
}

/// The header lines, in order, without the status line and the blank end.
fn lines(r: &ConnectReply<'_>) -> Vec<String> {
    let text = String::from_utf8(r.render()).unwrap();
    let head = text
        .strip_suffix("\r\n\r\n")
        .expect("ends the head, no body");
    let mut lines = head.split("\r\n").map(str::to_owned);
    assert_eq!(lines.next().as_deref(), Some("HTTP/1.1 200 CONNECTED"));
    lines.collect()
}

/// Values of the header `name` (exact case), in order.
fn values(r: &ConnectReply<'_>, name: &str) -> Vec<String> {
    let prefix = format!("{name}: ");
    lines(r)
        .iter()
        .filter_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
        .collect()
}

fn one(r: &ConnectReply<'_>, name: &str) -> String {
    let v = values(r, name);
    assert_eq!(v.len(), 1, "{name}: {v:?}");
    v[0].clone()
}

#[test]
fn plain_ipv4_session_says_what_openconnect_needs_and_no_more() {
    let r = plain();
    let l = lines(&r);
    assert_eq!(
        l[..5],
        [
            "X-CSTP-Version: 1",
            "X-CSTP-Server-Name: ocserv-uring 0.1.0",
            "X-CSTP-DPD: 90",
            "X-CSTP-Address: 192.168.1.10",
            "X-CSTP-Netmask: 255.255.255.0",
        ]
    );
    for (name, value) in [
        ("X-CSTP-Idle-Timeout", "none"),
        ("X-CSTP-Session-Timeout", "none"),
        // No routes: a full tunnel, which takes all DNS.
        ("X-CSTP-Tunnel-All-DNS", "true"),
        ("X-CSTP-Client-Bypass-Protocol", "false"),
        ("X-CSTP-Keepalive", "32400"),
        ("X-CSTP-Disconnected-Timeout", "none"),
        ("X-CSTP-Keep", "true"),
        ("X-CSTP-TCP-Keepalive", "true"),
        ("X-CSTP-License", "accept"),
        ("X-CSTP-Rekey-Method", "none"),
        ("X-CSTP-Base-MTU", "1500"),
        ("X-CSTP-MTU", "1434"),
    ] {
        assert_eq!(one(&r, name), value, "{name}");
    }
    let absent = [
        "X-CSTP-Address-IP6",
        "X-CSTP-DNS",
        "X-CSTP-NBNS",
        "X-CSTP-Split-Include",
        "X-CSTP-Split-Exclude",
        "X-CSTP-Split-DNS",
        "X-CSTP-Default-Domain",
        "X-CSTP-Hostname",
        "X-CSTP-Session-Timeout-Remaining",
        "X-CSTP-Banner",
        "X-CSTP-Rekey-Time",
        "X-CSTP-MSIE-Proxy-Pac-URL",
    ];
    for name in absent {
        assert!(values(&r, name).is_empty(), "{name}");
    }
    assert!(!l.iter().any(|h| h.starts_with("X-DTLS")), "{l:?}");
}

#[test]
fn split_routes_are_network_and_mask_and_a_default_route_is_a_full_tunnel() {
    let routes = [
        "10.0.0.0/8".parse().unwrap(),
        "172.16.1.0/24".parse().unwrap(),
    ];
    let no_routes = ["10.9.0.0/16".parse().unwrap()];
    let mut r = plain();
    r.routes = &routes;
    r.no_routes = &no_routes;
    assert_eq!(
        values(&r, "X-CSTP-Split-Include"),
        ["10.0.0.0/255.0.0.0", "172.16.1.0/255.255.255.0"]
    );
    assert_eq!(values(&r, "X-CSTP-Split-Exclude"), ["10.9.0.0/255.255.0.0"]);
    assert_eq!(one(&r, "X-CSTP-Tunnel-All-DNS"), "false");

    let full = ["0.0.0.0/0".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
    r.routes = &full;
    assert!(values(&r, "X-CSTP-Split-Include").is_empty());
    // Exclusions still apply, and all DNS goes through a full tunnel.
    assert_eq!(values(&r, "X-CSTP-Split-Exclude"), ["10.9.0.0/255.255.0.0"]);
    assert_eq!(one(&r, "X-CSTP-Tunnel-All-DNS"), "true");
}

#[test]
fn ipv6_full_capability_gets_its_address_routes_and_servers() {
    let dns: [IpAddr; 2] = ["192.168.1.1".parse().unwrap(), "fd00::53".parse().unwrap()];
    let nbns: [IpAddr; 2] = ["192.168.1.2".parse().unwrap(), "fd00::54".parse().unwrap()];
    let routes6 = ["fd00:1::/64".parse().unwrap()];
    let no_routes6 = ["fd00:1:0:9::/64".parse().unwrap()];
    let mut r = plain();
    r.lease6 = Some(("fd00::a".parse().unwrap(), Ipv6Form::Full));
    r.net6 = Some("fd00::/64".parse().unwrap());
    r.dns = &dns;
    r.nbns = &nbns;
    r.routes6 = &routes6;
    r.no_routes6 = &no_routes6;
    assert_eq!(one(&r, "X-CSTP-Address-IP6"), "fd00::a/64");
    assert_eq!(values(&r, "X-CSTP-Address"), ["192.168.1.10"]);
    assert_eq!(values(&r, "X-CSTP-DNS"), ["192.168.1.1", "fd00::53"]);
    assert_eq!(values(&r, "X-CSTP-NBNS"), ["192.168.1.2", "fd00::54"]);
    assert_eq!(values(&r, "X-CSTP-Split-Include-IP6"), ["fd00:1::/64"]);
    assert_eq!(values(&r, "X-CSTP-Split-Exclude-IP6"), ["fd00:1:0:9::/64"]);

    let default6 = ["::/0".parse().unwrap()];
    r.routes6 = &default6;
    assert!(values(&r, "X-CSTP-Split-Include-IP6").is_empty());
}

#[test]
fn ipv6_legacy_form_is_a_second_address_pair_without_ipv6_routes_or_servers() {
    let dns: [IpAddr; 2] = ["192.168.1.1".parse().unwrap(), "fd00::53".parse().unwrap()];
    let routes6 = ["fd00:1::/64".parse().unwrap()];
    let mut r = plain();
    r.lease6 = Some(("fd00::a".parse().unwrap(), Ipv6Form::Legacy));
    r.net6 = Some("fd00::/64".parse().unwrap());
    r.dns = &dns;
    r.routes6 = &routes6;
    assert_eq!(values(&r, "X-CSTP-Address"), ["192.168.1.10", "fd00::a"]);
    assert_eq!(values(&r, "X-CSTP-Netmask"), ["255.255.255.0", "fd00::/64"]);
    assert!(values(&r, "X-CSTP-Address-IP6").is_empty());
    assert_eq!(values(&r, "X-CSTP-DNS"), ["192.168.1.1"]);
    assert!(values(&r, "X-CSTP-Split-Include-IP6").is_empty());
}

#[test]
fn psk_offer_names_the_app_id_and_legacy_the_session_id_and_mtu() {
    let psk = DtlsChoice {
        mode: DtlsMode::Psk,
        header: "X-DTLS-CipherSuite",
        value: "PSK-NEGOTIATE",
    };
    let mut r = plain();
    r.dtls = Some(DtlsOffer {
        choice: psk,
        id: "00ab",
        port: 4443,
    });
    assert_eq!(one(&r, "X-DTLS-App-ID"), "00ab");
    assert_eq!(one(&r, "X-DTLS-Port"), "4443");
    assert_eq!(one(&r, "X-DTLS-DPD"), "90");
    assert_eq!(one(&r, "X-DTLS-Keepalive"), "32400");
    assert_eq!(one(&r, "X-DTLS-CipherSuite"), "PSK-NEGOTIATE");
    assert!(values(&r, "X-DTLS-Session-ID").is_empty());
    assert!(values(&r, "X-DTLS-MTU").is_empty());

    let legacy = DtlsChoice {
        mode: DtlsMode::Legacy {
            suite: LegacySuite::Aes256Gcm,
            master_secret: [7; 48],
        },
        header: "X-DTLS12-CipherSuite",
        value: "AES256-GCM-SHA384",
    };
    r.dtls = Some(DtlsOffer {
        choice: legacy,
        id: "00cd",
        port: 443,
    });
    assert_eq!(one(&r, "X-DTLS-Session-ID"), "00cd");
    assert_eq!(one(&r, "X-DTLS-MTU"), "1434");
    assert_eq!(one(&r, "X-DTLS12-CipherSuite"), "AES256-GCM-SHA384");
    assert!(values(&r, "X-DTLS-App-ID").is_empty());
}

#[test]
fn timeouts_rekey_and_banner() {
    let mut r = plain();
    r.idle_timeout = Some(Duration::from_secs(1200));
    r.session_timeout = Some(Duration::from_secs(86400));
    r.session_left = Some(Duration::from_millis(3_599_900));
    r.rekey = Some(("ssl", 172800));
    r.banner = "Welcome\r\nto the VPN\tplease behave";
    assert_eq!(one(&r, "X-CSTP-Idle-Timeout"), "1200");
    assert_eq!(one(&r, "X-CSTP-Session-Timeout"), "86400");
    assert_eq!(one(&r, "X-CSTP-Session-Timeout-Remaining"), "3599");
    assert_eq!(one(&r, "X-CSTP-Rekey-Method"), "ssl");
    assert_eq!(one(&r, "X-CSTP-Rekey-Time"), "172800");
    // One header line whatever the banner holds.
    assert_eq!(
        one(&r, "X-CSTP-Banner"),
        "Welcome  to the VPN please behave"
    );
}

#[test]
fn names_domains_and_the_operators_headers() {
    let split_dns = ["corp.example".to_owned(), "lab.example".to_owned()];
    let http_headers = [
        "X-Frame-Options: deny".to_owned(),
        "not a header".to_owned(),
    ];
    let custom = ["X-Who: %{U} of %{G}".to_owned()];
    let mut r = plain();
    r.user = "al\nice";
    r.group = Some("staff\r");
    r.hostname = "laptop";
    r.default_domain = Some("example.com");
    r.split_dns = &split_dns;
    r.client_bypass_protocol = true;
    r.tunnel_all_dns = true;
    r.http_headers = &http_headers;
    r.proxy_url = "http://proxy/%{U}.pac";
    r.custom_headers = &custom;
    assert_eq!(one(&r, "X-CSTP-Hostname"), "laptop");
    assert_eq!(one(&r, "X-CSTP-Default-Domain"), "example.com");
    assert_eq!(
        values(&r, "X-CSTP-Split-DNS"),
        ["corp.example", "lab.example"]
    );
    assert_eq!(one(&r, "X-CSTP-Client-Bypass-Protocol"), "true");
    assert_eq!(one(&r, "X-CSTP-Tunnel-All-DNS"), "true");
    assert_eq!(one(&r, "X-Frame-Options"), "deny");
    // Control characters in names never split a header line.
    assert_eq!(
        one(&r, "X-CSTP-MSIE-Proxy-Pac-URL"),
        "http://proxy/alice.pac"
    );
    assert_eq!(one(&r, "X-Who"), "alice of staff");
    assert!(
        lines(&r).iter().all(|l| l.contains(": ")),
        "{:?}",
        lines(&r)
    );
}
