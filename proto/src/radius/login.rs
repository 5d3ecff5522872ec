//! A login over RADIUS as ocserv runs one: the Access-Request it sends and
//! what an Access-Accept, -Reject or -Challenge means for the login.

use std::net::IpAddr;

use super::{attr, Builder, Error, Packet, AUTHENTICATOR_LEN};
use crate::auth::{Accepted, Grants, Prompt};

/// Who is logging in from where, as the Access-Request tells it.
#[derive(Clone, Debug, Default)]
pub struct Login<'a> {
    pub user: &'a str,
    /// The client's address (Calling-Station-Id).
    pub client: Option<IpAddr>,
    /// The server address the client reached (NAS-IP-Address or
    /// NAS-IPv6-Address).
    pub nas_ip: Option<IpAddr>,
    /// Empty: none sent.
    pub nas_identifier: &'a str,
    /// The session's Acct-Session-Id, the same in its accounting.
    pub session_id: &'a str,
    /// Connect-Info.
    pub user_agent: &'a str,
}

/// The Access-Request for one answer of the user's (the password, or the
/// answer to a challenge with its State).
pub fn access_request(
    login: &Login<'_>,
    answer: &[u8],
    state: Option<&[u8]>,
    secret: &[u8],
    identifier: u8,
    authenticator: [u8; AUTHENTICATOR_LEN],
) -> Result<Vec<u8>, Error> {
    let mut b = Builder::access_request(identifier, authenticator)
        .user_name(login.user)
        .password(secret, answer);
    match login.nas_ip {
        Some(IpAddr::V4(a)) => b = b.ipv4(attr::NAS_IP_ADDRESS, a),
        Some(IpAddr::V6(a)) => b = b.ipv6(attr::NAS_IPV6_ADDRESS, a),
        None => {}
    }
    if !login.nas_identifier.is_empty() {
        b = b.text(attr::NAS_IDENTIFIER, login.nas_identifier);
    }
    if let Some(ip) = login.client {
        b = b.text(attr::CALLING_STATION_ID, &ip.to_string());
    }
    if !login.session_id.is_empty() {
        b = b.text(attr::ACCT_SESSION_ID, login.session_id);
    }
    if !login.user_agent.is_empty() {
        let agent = truncate(login.user_agent, super::MAX_VALUE);
        b = b.text(attr::CONNECT_INFO, agent);
    }
    b = b
        .u32(attr::SERVICE_TYPE, attr::service_type::AUTHENTICATE_ONLY)
        .u32(attr::NAS_PORT_TYPE, attr::nas_port_type::ASYNC);
    if let Some(state) = state {
        b = b.attr(attr::STATE, state);
    }
    b.encode(secret)
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Which reply attribute names the user's groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupAttribute {
    /// Class, as ocserv reads it: `OU=g1;g2` or one group name.
    Class,
    /// Filter-Id: one group name per attribute.
    FilterId,
    /// A vendor's sub-attribute (vendor number, type): one name each.
    Vendor(u32, u8),
    None,
}

/// What a reply to an Access-Request means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Accept(Accepted),
    /// With the Reply-Message, if any.
    Reject(Option<String>),
    /// Ask the user this, then send the answer with this State.
    Challenge {
        prompt: Prompt,
        state: Vec<u8>,
    },
}

/// Reads a verified reply. A challenge without a State or a message
/// cannot be answered; it is a refusal, as with ocserv.
pub fn answer(reply: &Packet<'_>, groups: GroupAttribute, separator: char) -> Answer {
    let message = reply_message(reply);
    match reply.code() {
        super::Code::AccessAccept => match accepted(reply, groups, separator) {
            Ok(a) => Answer::Accept(a),
            Err(why) => Answer::Reject(Some(why)),
        },
        super::Code::AccessChallenge => {
            let state = reply.get(attr::STATE).map(|a| a.value.to_vec());
            match (state, message) {
                (Some(state), Some(message)) if !state.is_empty() => {
                    let echo = reply
                        .get(attr::PROMPT)
                        .and_then(|a| a.u32().ok())
                        .is_some_and(|p| p == 1);
                    Answer::Challenge {
                        prompt: Prompt { message, echo },
                        state,
                    }
                }
                _ => Answer::Reject(None),
            }
        }
        _ => Answer::Reject(message),
    }
}

/// The Reply-Messages, one per line (RFC 2865 §5.18 allows several).
fn reply_message(reply: &Packet<'_>) -> Option<String> {
    let lines: Vec<String> = reply
        .get_all(attr::REPLY_MESSAGE)
        .map(|a| String::from_utf8_lossy(a.value).into_owned())
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// The groups and grants of an Access-Accept; a Service-Type other than
/// Framed-User refuses the login (ocserv does the same).
fn accepted(
    reply: &Packet<'_>,
    group_attr: GroupAttribute,
    separator: char,
) -> Result<Accepted, String> {
    let mut a = Accepted::default();
    let g: &mut Grants = &mut a.grants;
    for at in reply.attributes() {
        let v = at.value;
        match at.ty {
            attr::SERVICE_TYPE => {
                let t = at.u32().map_err(|e| e.to_string())?;
                if t != attr::service_type::FRAMED {
                    return Err(format!("Service-Type {t} is not Framed-User"));
                }
            }
            attr::FRAMED_IP_ADDRESS => {
                let ip = at.ipv4().map_err(|e| e.to_string())?;
                // 255.255.255.254 and .255: the NAS picks (RFC 2865 §5.8).
                if u32::from(ip) < 0xffff_fffe {
                    g.ipv4 = Some(ip);
                }
            }
            attr::FRAMED_IPV6_ADDRESS => g.ipv6 = Some(at.ipv6().map_err(|e| e.to_string())?),
            attr::FRAMED_ROUTE | attr::FRAMED_IPV6_ROUTE => {
                if let Some(net) = route(v) {
                    g.routes.push(net);
                }
            }
            attr::FRAMED_IPV6_PREFIX => {
                g.routes
                    .push(at.ipv6_prefix().map_err(|e| e.to_string())?.into());
            }
            attr::DNS_SERVER_IPV6_ADDRESS => {
                g.dns.push(at.ipv6().map_err(|e| e.to_string())?.into());
            }
            attr::SESSION_TIMEOUT => g.session_timeout = at.u32().ok().map(u64::from),
            attr::IDLE_TIMEOUT => g.idle_timeout = at.u32().ok().map(u64::from),
            attr::ACCT_INTERIM_INTERVAL => g.interim_interval = at.u32().ok().map(u64::from),
            attr::CLASS => {
                a.class.push(v.to_vec());
                if group_attr == GroupAttribute::Class {
                    class_groups(v, separator, &mut a.groups);
                }
            }
            attr::FILTER_ID if group_attr == GroupAttribute::FilterId => {
                push_group(v, &mut a.groups);
            }
            attr::VENDOR_SPECIFIC => {
                let Ok(vsa) = at.vendor_specific() else {
                    continue;
                };
                for (ty, value) in vsa.attributes() {
                    match (vsa.vendor_id, ty) {
                        (attr::microsoft::VENDOR, t)
                            if t == attr::microsoft::PRIMARY_DNS_SERVER
                                || t == attr::microsoft::SECONDARY_DNS_SERVER =>
                        {
                            if let Ok(b) = <[u8; 4]>::try_from(value) {
                                g.dns.push(std::net::Ipv4Addr::from(b).into());
                            }
                        }
                        (vendor, t) if group_attr == GroupAttribute::Vendor(vendor, t) => {
                            push_group(value, &mut a.groups);
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(a)
}

/// `10.0.0.0/8 [gateway [metric]]`: the network; anything else is skipped,
/// as ocserv skips a route without a prefix length.
fn route(v: &[u8]) -> Option<ipnet::IpNet> {
    let text = std::str::from_utf8(v).ok()?;
    let net: ipnet::IpNet = text.split_whitespace().next()?.parse().ok()?;
    Some(net.trunc())
}

/// ocserv's reading of Class: `OU=a;b;c` is three groups, anything else
/// one.
fn class_groups(v: &[u8], separator: char, out: &mut Vec<String>) {
    let text = String::from_utf8_lossy(v);
    match text.strip_prefix("OU=") {
        Some(list) => {
            for g in list.split(separator) {
                push_group(g.as_bytes(), out);
            }
        }
        None => push_group(v, out),
    }
}

fn push_group(v: &[u8], out: &mut Vec<String>) {
    let name = String::from_utf8_lossy(v).trim().to_owned();
    if !name.is_empty() && !out.contains(&name) {
        out.push(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radius::Code;

    const SECRET: &[u8] = b"s3cret";
    const AUTH: [u8; 16] = [7; 16];

    fn reply(code: Code, f: impl FnOnce(Builder) -> Builder) -> Vec<u8> {
        let req = access_request(
            &Login {
                user: "alice",
                ..Default::default()
            },
            b"pw",
            None,
            SECRET,
            1,
            AUTH,
        )
        .unwrap();
        let req = Packet::decode(&req).unwrap();
        f(Builder::reply(code, &req)).encode(SECRET).unwrap()
    }

    #[test]
    fn the_request_carries_what_ocserv_sends() {
        let login = Login {
            user: "alice",
            client: Some("10.1.2.3".parse().unwrap()),
            nas_ip: Some("192.0.2.1".parse().unwrap()),
            nas_identifier: "vpn1",
            session_id: "abc123",
            user_agent: "Open AnyConnect VPN Agent v9.12",
        };
        let bytes = access_request(&login, b"pw", Some(b"st"), SECRET, 9, AUTH).unwrap();
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(p.code(), Code::AccessRequest);
        assert_eq!(
            p.attributes().next().unwrap().ty,
            attr::MESSAGE_AUTHENTICATOR
        );
        let text = |t| p.get(t).unwrap().text().unwrap().to_owned();
        assert_eq!(text(attr::USER_NAME), "alice");
        assert_eq!(text(attr::CALLING_STATION_ID), "10.1.2.3");
        assert_eq!(text(attr::NAS_IDENTIFIER), "vpn1");
        assert_eq!(text(attr::ACCT_SESSION_ID), "abc123");
        assert_eq!(text(attr::CONNECT_INFO), "Open AnyConnect VPN Agent v9.12");
        assert_eq!(
            p.get(attr::NAS_IP_ADDRESS)
                .unwrap()
                .ipv4()
                .unwrap()
                .to_string(),
            "192.0.2.1"
        );
        assert_eq!(p.get(attr::STATE).unwrap().value, b"st");
        let hidden = p.get(attr::USER_PASSWORD).unwrap().value;
        assert_eq!(
            crate::radius::unhide_password(hidden, SECRET, &AUTH).unwrap(),
            b"pw"
        );
    }

    #[test]
    fn an_accept_gives_groups_and_grants() {
        let bytes = reply(Code::AccessAccept, |b| {
            b.u32(attr::SERVICE_TYPE, attr::service_type::FRAMED)
                .ipv4(attr::FRAMED_IP_ADDRESS, "192.168.77.50".parse().unwrap())
                .text(attr::FRAMED_ROUTE, "10.200.0.0/16 0.0.0.0 1")
                .text(attr::FRAMED_ROUTE, "no-prefix")
                .text(attr::CLASS, "OU=staff;lab")
                .u32(attr::SESSION_TIMEOUT, 600)
                .u32(attr::IDLE_TIMEOUT, 60)
                .u32(attr::ACCT_INTERIM_INTERVAL, 30)
                .vendor(311, 28, &[10, 0, 0, 53])
        });
        let p = Packet::decode(&bytes).unwrap();
        let Answer::Accept(a) = answer(&p, GroupAttribute::Class, ';') else {
            panic!()
        };
        assert_eq!(a.groups, ["staff", "lab"]);
        assert_eq!(a.class, [b"OU=staff;lab".to_vec()]);
        let g = a.grants;
        assert_eq!(g.ipv4, Some("192.168.77.50".parse().unwrap()));
        assert_eq!(g.routes, ["10.200.0.0/16".parse::<ipnet::IpNet>().unwrap()]);
        assert_eq!(g.dns, ["10.0.0.53".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            (g.session_timeout, g.idle_timeout, g.interim_interval),
            (Some(600), Some(60), Some(30))
        );

        let bytes = reply(Code::AccessAccept, |b| {
            b.text(attr::FILTER_ID, "engineering")
                .text(attr::CLASS, "plain")
                .ipv4(attr::FRAMED_IP_ADDRESS, "255.255.255.254".parse().unwrap())
        });
        let p = Packet::decode(&bytes).unwrap();
        let Answer::Accept(a) = answer(&p, GroupAttribute::FilterId, ';') else {
            panic!()
        };
        assert_eq!(
            (a.groups, a.grants.ipv4),
            (vec!["engineering".to_owned()], None)
        );
        let Answer::Accept(a) = answer(&p, GroupAttribute::Class, ';') else {
            panic!()
        };
        assert_eq!(a.groups, ["plain"]);
    }

    #[test]
    fn reject_challenge_and_a_wrong_service_type() {
        let p = reply(Code::AccessReject, |b| {
            b.text(attr::REPLY_MESSAGE, "Access denied")
        });
        assert_eq!(
            answer(&Packet::decode(&p).unwrap(), GroupAttribute::Class, ';'),
            Answer::Reject(Some("Access denied".into()))
        );
        let p = reply(Code::AccessChallenge, |b| {
            b.text(attr::REPLY_MESSAGE, "Enter your OTP code")
                .attr(attr::STATE, b"xyz")
        });
        assert_eq!(
            answer(&Packet::decode(&p).unwrap(), GroupAttribute::Class, ';'),
            Answer::Challenge {
                prompt: Prompt::secret("Enter your OTP code"),
                state: b"xyz".to_vec()
            }
        );
        let p = reply(Code::AccessChallenge, |b| {
            b.text(attr::REPLY_MESSAGE, "no state")
        });
        assert_eq!(
            answer(&Packet::decode(&p).unwrap(), GroupAttribute::Class, ';'),
            Answer::Reject(None)
        );
        let p = reply(Code::AccessAccept, |b| b.u32(attr::SERVICE_TYPE, 6));
        assert!(matches!(
            answer(&Packet::decode(&p).unwrap(), GroupAttribute::Class, ';'),
            Answer::Reject(Some(_))
        ));
    }
}
